"""The AIMD calibration, driven by scripted watchers under trio's MockClock."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from trio_gitaly.limits.adaptive import (
    MAX_WATCHER_TIMEOUTS,
    AdaptiveLimit,
    BackoffEvent,
    CalibrationMetrics,
    Calibrator,
)

INTERVAL_S = 30.0


class Scripted:
    """A watcher whose polls follow a script: "ok", "backoff", "error" or "hang"."""

    def __init__(self, name: str, script: list[str]) -> None:
        self.name = name
        self.script = script

    async def poll(self) -> BackoffEvent:
        step = self.script.pop(0) if self.script else "ok"
        if step == "hang":
            await trio.sleep_forever()
        if step == "error":
            raise RuntimeError("cannot read the cgroup's stats")
        backoff = step == "backoff"
        return BackoffEvent(
            self.name,
            backoff,
            "cgroup memory exceeds threshold" if backoff else "",
            {"memory_usage": 95} if backoff else {},
        )


def calibrator(
    limits: list[AdaptiveLimit], *watchers: Scripted
) -> tuple[Calibrator, CollectorRegistry]:
    registry = CollectorRegistry()
    return (
        Calibrator(limits, watchers, CalibrationMetrics(registry), interval_s=INTERVAL_S),
        registry,
    )


async def rounds(cal: Calibrator, limit: AdaptiveLimit, count: int) -> list[int]:
    """The limit's value after each of `count` calibration rounds of the running worker."""
    seen = []
    async with trio.open_nursery() as nursery:
        await nursery.start(cal.run)
        # Half an interval in, so each observation falls between two rounds.
        await trio.sleep(INTERVAL_S / 2)
        for _ in range(count):
            await trio.sleep(INTERVAL_S)
            seen.append(limit.current)
        nursery.cancel_scope.cancel()
    return seen


async def test_no_pressure_increases_by_one_up_to_max(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = AdaptiveLimit("perRPC/gitaly.SSHService/SSHUploadPack", 2, minimum=1, maximum=5)
    limit.update(4)  # starting calibration resets to the initial value
    cal, registry = calibrator([limit], Scripted("CgroupCpu", []))
    assert await rounds(cal, limit, 5) == [3, 4, 5, 5, 5]
    value = registry.get_sample_value(
        "gitaly_concurrency_limiting_current_limit", {"limit": limit.name}
    )
    assert value == 5


async def test_backoff_halves_down_to_min(autojump_clock: trio.testing.MockClock) -> None:
    limit = AdaptiveLimit("packObjects", 10, minimum=2, maximum=20)
    cal, registry = calibrator([limit], Scripted("CgroupMemory", ["backoff"] * 4))
    assert await rounds(cal, limit, 5) == [5, 2, 2, 2, 3]
    events = registry.get_sample_value(
        "gitaly_concurrency_limiting_backoff_events_total", {"watcher": "CgroupMemory"}
    )
    assert events == 4


async def test_several_backoff_events_in_a_round_decrease_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = [
        AdaptiveLimit("a", 16, minimum=1, maximum=16),
        AdaptiveLimit("b", 8, minimum=1, maximum=8),
    ]
    cal, _ = calibrator(
        limits, Scripted("CgroupCpu", ["backoff"]), Scripted("CgroupMemory", ["backoff"])
    )
    cal.reset()
    await cal.calibrate()
    assert [limit.current for limit in limits] == [8, 4]


async def test_watcher_errors_are_not_backoff_but_are_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = AdaptiveLimit("a", 4, minimum=1, maximum=8)
    cal, registry = calibrator([limit], Scripted("CgroupCpu", ["error", "error"]))
    assert await rounds(cal, limit, 2) == [5, 6]
    errors = registry.get_sample_value(
        "gitaly_concurrency_limiting_watcher_errors_total", {"watcher": "CgroupCpu"}
    )
    assert errors == 2


async def test_consecutive_timeouts_count_as_backoff_at_the_fifth(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = AdaptiveLimit("a", 40, minimum=1, maximum=100)
    # Four timeouts, a good poll (which resets the count), then five timeouts.
    script = ["hang"] * (MAX_WATCHER_TIMEOUTS - 1) + ["ok"] + ["hang"] * MAX_WATCHER_TIMEOUTS
    cal, registry = calibrator([limit], Scripted("CgroupCpu", script))
    cal.reset()
    values = []
    for _ in range(len(script)):
        await cal.calibrate()
        values.append(limit.current)
    assert values == [41, 42, 43, 44, 45, 46, 47, 48, 49, 24]
    events = registry.get_sample_value(
        "gitaly_concurrency_limiting_backoff_events_total", {"watcher": "CgroupCpu"}
    )
    assert events == 1


async def test_a_hanging_watcher_ends_the_round_without_asking_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limit = AdaptiveLimit("a", 10, minimum=1, maximum=20)
    later = Scripted("CgroupMemory", ["backoff"])
    cal, _ = calibrator([limit], Scripted("CgroupCpu", ["hang"]), later)
    cal.reset()
    start = trio.current_time()
    await cal.calibrate()
    assert trio.current_time() - start == pytest.approx(INTERVAL_S)
    assert limit.current == 11 and later.script == ["backoff"]


async def test_decrease_is_logged_with_its_reason(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    limit = AdaptiveLimit("packObjects", 10, minimum=1, maximum=20)
    cal, _ = calibrator([limit], Scripted("CgroupMemory", ["backoff"]))
    cal.reset()
    with caplog.at_level(logging.INFO, logger="trio_gitaly.limits"):
        await cal.calibrate()
    [record] = [r for r in caplog.records if r.getMessage() == "Multiplicative decrease"]
    fields = record.__dict__["fields"]
    assert fields == {
        "limit": "packObjects",
        "previous_limit": 10,
        "new_limit": 5,
        "watcher": "CgroupMemory",
        "reason": "cgroup memory exceeds threshold",
        "stats.memory_usage": 95,
    }

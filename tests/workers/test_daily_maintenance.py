"""Daily maintenance under trio's MockClock: it waits for its window, optimises inside it
only, stops at its end, and comes back the next day."""

from __future__ import annotations

import datetime
import itertools
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from tests.git.housekeeping_helpers import new_repository
from tests.helpers import make_config
from trio_gitaly.config import StorageConfig
from trio_gitaly.config_limits import CgroupsConfig
from trio_gitaly.config_values import Duration
from trio_gitaly.config_workers import DailyMaintenanceConfig
from trio_gitaly.git.catfile import CatfileCache
from trio_gitaly.git.command import CommandFactory
from trio_gitaly.git.housekeeping import HousekeepingManager
from trio_gitaly.git.version import detect
from trio_gitaly.limits.cgroups import cgroup_manager
from trio_gitaly.limits.server_limits import build_limits
from trio_gitaly.storage.diskcache import DiskCache
from trio_gitaly.storage.locator import Locator, Storage
from trio_gitaly.workers import background_workers
from trio_gitaly.workers.daily_maintenance import (
    PACE_S,
    StorageRoot,
    chosen_storages,
    next_window,
    run_daily_maintenance,
)

REAL_WAIT_STEP_S = 0.05
REAL_WAIT_STEPS = 1200  # a minute
# 11:00 local on the day the tests pretend to run; the default window opens at 12:00.
START = datetime.datetime(2026, 11, 28, 11, 0, 0)
HOUR_S = 3600.0


def count_packs(repo: str) -> int:
    return len([name for name in os.listdir(f"{repo}/objects/pack") if name.endswith(".pack")])


def make_repos(root: Path, *relative: str) -> None:
    for path in relative:
        subprocess.run(
            ["git", "init", "--quiet", "--bare", str(root / path)], check=True, capture_output=True
        )


def clock_now() -> Callable[[], datetime.datetime]:
    """Local wall-clock time that moves with trio's (mock) clock, from START."""
    origin = trio.current_time()
    return lambda: START + datetime.timedelta(seconds=trio.current_time() - origin)


class Recorder:
    """An optimiser that notes what it was asked and when (seconds after START)."""

    def __init__(self, fail: set[str] = frozenset(), cost_s: float = 0.0) -> None:
        self.calls: list[tuple[str, str, float]] = []
        self.fail = fail
        self.cost_s = cost_s
        self.origin = trio.current_time()

    async def __call__(self, storage: str, relative: str, path: str) -> None:
        assert os.path.isdir(path)
        self.calls.append((storage, relative, trio.current_time() - self.origin))
        await trio.sleep(self.cost_s)
        if relative in self.fail:
            raise RuntimeError(f"git repack failed in {relative}")


def test_next_window_is_strictly_after_now() -> None:
    assert next_window(START, 12, 0) == START.replace(hour=12)
    assert next_window(START.replace(hour=12), 12, 0) == START.replace(
        hour=12
    ) + datetime.timedelta(days=1)
    assert next_window(START.replace(hour=13, minute=5), 3, 30) == datetime.datetime(
        2026, 11, 29, 3, 30
    )


def test_storages_are_the_listed_ones_each_path_once(tmp_path: Path) -> None:
    a, b = StorageRoot("a", str(tmp_path / "x")), StorageRoot("b", str(tmp_path / "x"))
    c = StorageRoot("c", str(tmp_path / "y"))
    assert chosen_storages(DailyMaintenanceConfig(), [a, b, c]) == [a, c]
    assert chosen_storages(DailyMaintenanceConfig(storages=("b", "c")), [a, b, c]) == [b, c]


async def test_optimises_every_repository_inside_the_window_only(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    make_repos(
        tmp_path, "@hashed/aa/bb/one.git", "group/two.git", "group/sub/three.git", "four.git"
    )
    make_repos(tmp_path, "four.git/nested.git")  # inside a repository: never visited
    (tmp_path / "+gitaly" / "tmp").mkdir(parents=True)
    make_repos(tmp_path, "+gitaly/tmp/hidden.git")
    optimize = Recorder()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: run_daily_maintenance(
                DailyMaintenanceConfig(),
                [StorageRoot("default", str(tmp_path))],
                optimize,
                now=clock_now(),
                task_status=task_status,
            )
        )
        await trio.sleep(HOUR_S - 1)
        assert optimize.calls == []  # 11:59:59: not yet
        await trio.sleep(HOUR_S)
        nursery.cancel_scope.cancel()
    relatives = sorted(relative for _, relative, _ in optimize.calls)
    assert relatives == [
        "@hashed/aa/bb/one.git",
        "four.git",
        "group/sub/three.git",
        "group/two.git",
    ]
    times = [at for _, _, at in optimize.calls]
    assert all(HOUR_S <= at < HOUR_S + 600 for at in times)
    assert all(later - earlier >= PACE_S for earlier, later in itertools.pairwise(times))


async def test_the_window_ends_the_pass_and_the_next_day_starts_over(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_repos(tmp_path, *(f"r{i}.git" for i in range(10)))
    config = DailyMaintenanceConfig(start_hour=12, duration=Duration(30))
    optimize = Recorder(cost_s=8.0)  # ~9 s each with the pace: three or four fit in 30 s
    with caplog.at_level(logging.INFO, logger="trio_gitaly.maintenance"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_daily_maintenance(
                    config, [StorageRoot("default", str(tmp_path))], optimize, now=clock_now()
                )
            )
            await trio.sleep(HOUR_S + 31)
            first_day = list(optimize.calls)
            await trio.sleep(24 * HOUR_S)
            nursery.cancel_scope.cancel()
    assert 3 <= len(first_day) <= 4
    assert all(HOUR_S <= at <= HOUR_S + 30 for _, _, at in first_day)
    second_day = optimize.calls[len(first_day) :]
    assert second_day and all(25 * HOUR_S <= at <= 25 * HOUR_S + 30 for _, _, at in second_day)
    completed = [r for r in caplog.records if r.getMessage() == "maintenance: daily completed"]
    assert [r.__dict__["fields"]["window_ran_out"] for r in completed] == [True, True]
    scheduled = [r for r in caplog.records if r.getMessage() == "maintenance: daily scheduled"]
    assert scheduled[0].__dict__["fields"]["scheduled"] == "2026-11-28T12:00:00"


async def test_a_failure_ends_that_storages_walk_only(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_repos(tmp_path / "s1", "bad.git")
    make_repos(tmp_path / "s2", "good.git", "fine.git")
    optimize = Recorder(fail={"bad.git"})
    storages = [StorageRoot("s1", str(tmp_path / "s1")), StorageRoot("s2", str(tmp_path / "s2"))]
    with caplog.at_level(logging.INFO, logger="trio_gitaly.maintenance"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_daily_maintenance(
                    DailyMaintenanceConfig(), storages, optimize, now=clock_now()
                )
            )
            await trio.sleep(HOUR_S + 60)
            nursery.cancel_scope.cancel()
    assert sorted(relative for _, relative, _ in optimize.calls) == [
        "bad.git",
        "fine.git",
        "good.git",
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("maintenance: repo optimization failure") == 1
    assert messages.count("maintenance: repo optimization succeeded") == 2
    assert "maintenance: unable to completely walk storage" in messages


@pytest.mark.parametrize(
    "config",
    [DailyMaintenanceConfig(disabled=True), DailyMaintenanceConfig(duration=Duration(0))],
    ids=["disabled", "zero-duration"],
)
async def test_disabled_never_runs(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, config: DailyMaintenanceConfig
) -> None:
    make_repos(tmp_path, "a.git")
    optimize = Recorder()
    with trio.move_on_after(3 * 24 * HOUR_S):
        await run_daily_maintenance(
            config, [StorageRoot("default", str(tmp_path))], optimize, now=clock_now()
        )
    assert optimize.calls == []


async def test_the_servers_window_optimises_through_the_housekeeping_manager(
    mock_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The job as the tree builds it, on a real repository: when the window opens, the
    housekeeping manager repacks its packfiles (git runs in real time meanwhile)."""
    storage = tmp_path / "storage"
    new_repository(str(storage / "group" / "repo.git"), packs=3)
    cfg = msgspec.structs.replace(
        make_config(str(tmp_path)),
        storage=(StorageConfig(name="default", path=str(storage)),),
    )
    factory = CommandFactory(await detect(""))
    registry = CollectorRegistry()
    with cgroup_manager(CgroupsConfig(), [], registry) as cgroups:
        assert not cgroups.ready
        housekeeping = HousekeepingManager(factory, registry)
        [(_, job)] = [
            (name, worker)
            for name, worker in background_workers(
                cfg,
                storages=[Storage("default", str(storage))],
                registry=registry,
                catfile=CatfileCache(factory, registry),
                repository_counter=trio.sleep_forever,
                diskcache=DiskCache(Locator([Storage("default", str(storage))]), registry),
                housekeeping=housekeeping,
                cgroups=cgroups,
                limits=build_limits(cfg, registry, ()),
            )
            if name == "daily maintenance"
        ]
        packs_before = count_packs(str(storage / "group" / "repo.git"))
        with caplog.at_level(logging.INFO, logger="trio_gitaly.maintenance"):
            async with trio.open_nursery() as nursery:
                await nursery.start(job)
                now = datetime.datetime.now()
                mock_clock.jump((next_window(now, 12, 0) - now).total_seconds() + 1)
                # The mock clock stands still while git runs: wait in real time, boundedly.
                for _ in range(REAL_WAIT_STEPS):
                    messages = {r.getMessage() for r in caplog.records}
                    if "maintenance: repo optimization succeeded" in messages:
                        break
                    await trio.to_thread.run_sync(time.sleep, REAL_WAIT_STEP_S)
                nursery.cancel_scope.cancel()
        assert "maintenance: repo optimization succeeded" in messages
    assert count_packs(str(storage / "group" / "repo.git")) < packs_before

"""The cgroup watchers' decisions, from sequences of parent-group stats under MockClock.

(That the stats themselves are read correctly from a real hierarchy is tested in
test_cgroups.py.)
"""

from __future__ import annotations

import dataclasses

import trio
import trio.testing

from trio_gitaly.limits.cgroups import ParentStats
from trio_gitaly.limits.watchers import CgroupCpuWatcher, CgroupMemoryWatcher

QUIET = ParentStats(
    cpu_throttled_count=0,
    cpu_throttled_duration_s=0.0,
    memory_usage_bytes=100,
    memory_limit_bytes=1000,
    total_inactive_file_bytes=0,
    under_oom=False,
)


class Script:
    """A stats source that returns the next of `values` on each read."""

    def __init__(self, *values: ParentStats | None) -> None:
        self.values = list(values)

    def __call__(self) -> ParentStats | None:
        return self.values.pop(0)


def throttled(count: int, seconds: float) -> ParentStats:
    return dataclasses.replace(QUIET, cpu_throttled_count=count, cpu_throttled_duration_s=seconds)


async def test_cpu_backs_off_above_the_throttled_share_of_wall_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = Script(throttled(0, 0), throttled(10, 10.0), throttled(20, 26.0), throttled(5, 1.0))
    watcher = CgroupCpuWatcher(source, threshold=0.5)
    first = await watcher.poll()  # the baseline
    await trio.sleep(30)
    calm = await watcher.poll()  # 10 s of 30: a third
    await trio.sleep(30)
    busy = await watcher.poll()  # 16 s of 30: over half
    await trio.sleep(30)
    reset = await watcher.poll()  # counters went back: a new group, no verdict
    assert [first.backoff, calm.backoff, busy.backoff, reset.backoff] == [False, False, True, False]
    assert busy.reason == "cgroup CPU throttled too much"
    assert busy.stats == {
        "time_diff": 30.0,
        "throttled_duration": 16.0,
        "throttled_threshold": 0.5,
    }


async def test_memory_backs_off_at_the_threshold_net_of_inactive_cache() -> None:
    cached = dataclasses.replace(QUIET, memory_usage_bytes=950, total_inactive_file_bytes=100)
    full = dataclasses.replace(QUIET, memory_usage_bytes=950, total_inactive_file_bytes=50)
    unlimited = dataclasses.replace(QUIET, memory_usage_bytes=950, memory_limit_bytes=0)
    oom = dataclasses.replace(QUIET, under_oom=True)
    watcher = CgroupMemoryWatcher(Script(QUIET, cached, full, unlimited, oom), threshold=0.9)
    events = [await watcher.poll() for _ in range(5)]
    assert [e.backoff for e in events] == [False, False, True, False, True]
    assert events[2].reason == "cgroup memory exceeds threshold"
    assert events[2].stats == {
        "memory_usage": 950,
        "inactive_file": 50,
        "memory_limit": 1000,
        "memory_threshold": 0.9,
    }
    assert events[4].reason == "cgroup is under OOM"


async def test_without_cgroups_nothing_backs_off() -> None:
    for watcher in (
        CgroupCpuWatcher(Script(None, None), threshold=0.0),
        CgroupMemoryWatcher(Script(None, None), threshold=0.0),
    ):
        assert not (await watcher.poll()).backoff
        assert not (await watcher.poll()).backoff

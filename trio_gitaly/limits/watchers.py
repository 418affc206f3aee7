"""The resource watchers of adaptive limiting: cgroup CPU throttling and memory.

Both read the stats of the server's parent cgroup; without cgroups they never report
pressure. Thresholds default as in Gitaly (`[adaptive_limiting]`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import trio

from trio_gitaly.config_limits import (
    DEFAULT_CPU_THROTTLED_THRESHOLD,
    DEFAULT_MEMORY_THRESHOLD,
    AdaptiveLimitingConfig,
)
from trio_gitaly.limits.adaptive import BackoffEvent, Watcher
from trio_gitaly.limits.cgroups import ParentStats

CPU_WATCHER: Final = "CgroupCpu"
MEMORY_WATCHER: Final = "CgroupMemory"

#: Reads the parent cgroup's stats; None when cgroups are off.
StatsSource = Callable[[], ParentStats | None]


class CgroupCpuWatcher:
    """Backs off when the group spent more than `threshold` of the time since the last
    poll throttled. The first poll only takes a baseline, and counters that went back
    (a new group) never back off."""

    name = CPU_WATCHER

    def __init__(self, stats: StatsSource, threshold: float) -> None:
        self._stats = stats
        self.threshold = threshold
        self._last: tuple[float, ParentStats] | None = None

    async def poll(self) -> BackoffEvent:
        """Compare throttling since the last poll. Cancellation: nothing to undo."""
        await trio.lowlevel.checkpoint()
        stats = self._stats()
        if stats is None:
            return BackoffEvent(self.name, False)
        now = trio.current_time()
        last, self._last = self._last, (now, stats)
        if last is None:
            return BackoffEvent(self.name, False)
        then, before = last
        if (
            stats.cpu_throttled_count < before.cpu_throttled_count
            or stats.cpu_throttled_duration_s < before.cpu_throttled_duration_s
        ):
            return BackoffEvent(self.name, False)
        throttled_s = stats.cpu_throttled_duration_s - before.cpu_throttled_duration_s
        elapsed_s = abs(now - then)
        if elapsed_s > 0 and throttled_s / elapsed_s > self.threshold:
            return BackoffEvent(
                self.name,
                True,
                "cgroup CPU throttled too much",
                {
                    "time_diff": elapsed_s,
                    "throttled_duration": throttled_s,
                    "throttled_threshold": self.threshold,
                },
            )
        return BackoffEvent(self.name, False)


class CgroupMemoryWatcher:
    """Backs off under OOM, or when memory in use (less inactive page cache, which the
    kernel reclaims first) reaches `threshold` of the group's limit."""

    name = MEMORY_WATCHER

    def __init__(self, stats: StatsSource, threshold: float) -> None:
        self._stats = stats
        self.threshold = threshold

    async def poll(self) -> BackoffEvent:
        """Look at the group's memory once. Cancellation: nothing to undo."""
        await trio.lowlevel.checkpoint()
        stats = self._stats()
        if stats is None:
            return BackoffEvent(self.name, False)
        if stats.under_oom:
            return BackoffEvent(self.name, True, "cgroup is under OOM")
        usage, limit = stats.memory_usage_bytes, stats.memory_limit_bytes
        if limit > 0 and usage > 0:
            used = usage - stats.total_inactive_file_bytes
            if used / limit >= self.threshold:
                return BackoffEvent(
                    self.name,
                    True,
                    "cgroup memory exceeds threshold",
                    {
                        "memory_usage": usage,
                        "inactive_file": stats.total_inactive_file_bytes,
                        "memory_limit": limit,
                        "memory_threshold": self.threshold,
                    },
                )
        return BackoffEvent(self.name, False)


def watchers(config: AdaptiveLimitingConfig, stats: StatsSource) -> list[Watcher]:
    """The server's watchers on its cgroup's `stats`; a threshold of 0 means Gitaly's default."""
    return [
        CgroupCpuWatcher(stats, config.cpu_throttled_threshold or DEFAULT_CPU_THROTTLED_THRESHOLD),
        CgroupMemoryWatcher(stats, config.memory_threshold or DEFAULT_MEMORY_THRESHOLD),
    ]

"""Gitaly's per-group cgroup metrics, read from cgroupfs when Prometheus scrapes.

One collector, registered only with `[cgroups] metrics_enabled`; it reports every
`repos-N` group created so far (label `path`, the group's relative path). Units follow
Gitaly: `gitaly_cgroup_cpu_usage_total` is in nanoseconds on v1 (present only where
cpuacct shares the cpu hierarchy) and in microseconds on v2.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from prometheus_client import Metric

    from trio_gitaly.limits.cgroups._hierarchy import GroupSample, Hierarchy

LOG = logging.getLogger("trio_gitaly.cgroups")


@final
class GroupCollector:
    """A prometheus_client collector over the groups `groups()` names."""

    def __init__(self, hierarchy: Hierarchy, groups: Callable[[], Sequence[str]]) -> None:
        self._hierarchy = hierarchy
        self._groups = groups

    def describe(self) -> Iterator[Metric]:
        """The families, without samples: registering reads no file."""
        yield from self._families().values()

    def collect(self) -> Iterator[Metric]:
        """The families with one sample set per created group."""
        families = self._families()
        for group in self._groups():
            try:
                sample = self._hierarchy.sample(group)
            except (OSError, ValueError) as exc:
                LOG.warning(
                    "unable to get cgroup stats",
                    extra={"fields": {"cgroup_path": group, "error": str(exc)}},
                )
                continue
            _add(families, group, sample)
        yield from families.values()

    def _families(self) -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "cpu_usage": GaugeMetricFamily(
                "gitaly_cgroup_cpu_usage_total", "CPU Usage of Cgroup", labels=["path", "type"]
            ),
            "cfs_periods": CounterMetricFamily(
                "gitaly_cgroup_cpu_cfs_periods_total",
                "Number of elapsed enforcement period intervals",
                labels=["path"],
            ),
            "cfs_throttled_periods": CounterMetricFamily(
                "gitaly_cgroup_cpu_cfs_throttled_periods_total",
                "Number of throttled period intervals",
                labels=["path"],
            ),
            "cfs_throttled_s": CounterMetricFamily(
                "gitaly_cgroup_cpu_cfs_throttled_seconds_total",
                "Total time duration the Cgroup has been throttled",
                labels=["path"],
            ),
            "procs": GaugeMetricFamily(
                "gitaly_cgroup_procs_total", "Total number of procs", labels=["path", "subsystem"]
            ),
        }
        if self._hierarchy.version == 1:
            families["memory_reclaim_attempts"] = GaugeMetricFamily(
                "gitaly_cgroup_memory_reclaim_attempts_total",
                "Number of memory usage hits limits",
                labels=["path"],
            )
        return families


def _add(
    families: dict[str, GaugeMetricFamily | CounterMetricFamily], group: str, sample: GroupSample
) -> None:
    if sample.cpu_user is not None:
        families["cpu_usage"].add_metric([group, "user"], sample.cpu_user)
    if sample.cpu_kernel is not None:
        families["cpu_usage"].add_metric([group, "kernel"], sample.cpu_kernel)
    families["cfs_periods"].add_metric([group], sample.cfs_periods)
    families["cfs_throttled_periods"].add_metric([group], sample.cfs_throttled_periods)
    families["cfs_throttled_s"].add_metric([group], sample.cfs_throttled_s)
    for subsystem, count in sample.procs.items():
        families["procs"].add_metric([group, subsystem], count)
    if sample.memory_reclaim_attempts is not None and "memory_reclaim_attempts" in families:
        families["memory_reclaim_attempts"].add_metric([group], sample.memory_reclaim_attempts)

"""gitaly_housekeeping_* metrics: what housekeeping did, how long it took, what it saw.

Names, labels and buckets are Gitaly's (internal/git/housekeeping/metrics.go), so its
dashboards work unchanged.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from prometheus_client import Counter, Histogram

from trio_gitaly.metrics import GRPC_LATENCY_BUCKETS_S

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from trio_gitaly.git.housekeeping._info import RepositoryInfo

#: The `stage` of a task run outside a write-ahead-log transaction (all of ours).
STAGE_APPLY: Final = "apply"
# What Go reports as the time since its zero time: its longest duration, in seconds.
_NEVER_S: Final = (2**63 - 1) / 1e9
_MINUTE_S: Final = 60.0
_HOUR_S: Final = 3600.0
_DAY_S: Final = 24 * _HOUR_S
_SINCE_OPTIMIZATION_BUCKETS_S: Final = (
    1.0, _MINUTE_S, 5 * _MINUTE_S, 10 * _MINUTE_S, 30 * _MINUTE_S,
    _HOUR_S, 3 * _HOUR_S, 6 * _HOUR_S, 12 * _HOUR_S, 18 * _HOUR_S,
    _DAY_S, 2 * _DAY_S, 3 * _DAY_S, 5 * _DAY_S, 7 * _DAY_S, 14 * _DAY_S, 21 * _DAY_S, 28 * _DAY_S,
)  # fmt: skip


def exponential_range(low: float, high: float, count: int) -> tuple[float, ...]:
    """`count` buckets from `low` to `high`, each a constant factor above the last."""
    factor = (high / low) ** (1 / (count - 1))
    return tuple(low * factor**index for index in range(count))


class HousekeepingMetrics:
    """The housekeeping metrics, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.tasks_total = Counter(
            "gitaly_housekeeping_tasks",
            "Total number of housekeeping tasks performed in the repository",
            ["housekeeping_task", "status"],
            registry=registry,
        )
        self.tasks_latency = Histogram(
            "gitaly_housekeeping_tasks_latency",
            "Latency of the housekeeping tasks performed",
            ["housekeeping_task", "stage"],
            buckets=GRPC_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.pruned_files_total = Counter(
            "gitaly_housekeeping_pruned_files",
            "Total number of files pruned",
            ["filetype"],
            registry=registry,
        )
        self.data_structure_existence = Counter(
            "gitaly_housekeeping_data_structure_existence",
            "Total number of data structures that exist in the repository",
            ["data_structure", "exists"],
            registry=registry,
        )
        self.data_structure_count = Histogram(
            "gitaly_housekeeping_data_structure_count",
            "Total count of the data structures that exist in the repository",
            ["data_structure"],
            buckets=exponential_range(1, 10_000_000, 32),
            registry=registry,
        )
        self.data_structure_size = Histogram(
            "gitaly_housekeeping_data_structure_size",
            "Total size of the data structures that exist in the repository",
            ["data_structure"],
            buckets=exponential_range(1, 50_000_000_000, 32),
            registry=registry,
        )
        self.time_since_last_optimization = Histogram(
            "gitaly_housekeeping_time_since_last_optimization_seconds",
            "Absolute time in seconds since a given optimization has last been performed",
            ["data_structure"],
            buckets=_SINCE_OPTIMIZATION_BUCKETS_S,
            registry=registry,
        )

    def observe_latency(self, task: str, started: float) -> None:
        """Record that `task` finished, having started at `started` (time.monotonic())."""
        self.tasks_latency.labels(task, STAGE_APPLY).observe(time.monotonic() - started)

    def report_repository_info(self, info: RepositoryInfo, *, now: float) -> None:
        """Record the state a run started from."""
        graph, packs, loose = info.commit_graph, info.packfiles, info.loose_objects
        for name, exists in (
            ("commit_graph", graph.exists),
            ("commit_graph_bloom_filters", graph.bloom_filters),
            ("commit_graph_generation_data", graph.generation_data),
            ("commit_graph_generation_data_overflow", graph.generation_data_overflow),
            ("bitmap", info.bitmap.exists),
            ("bitmap_hash_cache", info.bitmap.hash_cache),
            ("bitmap_lookup_table", info.bitmap.lookup_table),
            ("multi_pack_index", info.multi_pack_index.exists),
            ("multi_pack_index_bitmap", info.multi_pack_index_bitmap.exists),
            ("multi_pack_index_bitmap_hash_cache", info.multi_pack_index_bitmap.hash_cache),
            ("multi_pack_index_bitmap_lookup_table", info.multi_pack_index_bitmap.lookup_table),
        ):
            self.data_structure_existence.labels(name, _go_bool(exists)).inc()
            # The other series exists too, at 0, so both show up from the first run.
            self.data_structure_existence.labels(name, _go_bool(not exists)).inc(0)
        for name, count in (
            ("loose_objects_recent", loose.count - loose.stale_count),
            ("loose_objects_stale", loose.stale_count),
            ("commit_graph_chain", graph.chain_length),
            ("packfiles", packs.count),
            ("packfiles_cruft", packs.cruft_count),
            ("packfiles_keep", packs.keep_count),
            ("packfiles_reverse_indices", packs.reverse_index_count),
            ("multi_pack_index_packfile_count", info.multi_pack_index.packfile_count),
            ("loose_references", info.references.loose_count),
        ):
            self.data_structure_count.labels(name).observe(count)
        for name, size in (
            ("loose_objects_recent", loose.size - loose.stale_size),
            ("loose_objects_stale", loose.stale_size),
            ("packfiles", packs.size),
            ("packfiles_cruft", packs.cruft_size),
            ("packfiles_keep", packs.keep_size),
            ("packed_references", info.references.packed_size),
        ):
            self.data_structure_size.labels(name).observe(size)
        last = info.last_full_repack
        since = _NEVER_S if last is None else now - last
        self.time_since_last_optimization.labels("packfiles_full_repack").observe(since)


def _go_bool(value: bool) -> str:
    return "true" if value else "false"

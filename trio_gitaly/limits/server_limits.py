"""The server's limiters, built from its config, with Gitaly's metrics.

Per-RPC limiters (`[[concurrency]]`) are keyed by repository relative path; the
pack-objects limiter (`[pack_objects_limiting]`) by client IP. Adaptive limits are named
as in Gitaly (`perRPC<method>`, `packObjects`) for the current-limit gauge and logs.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from trio_gitaly.config_limits import (
    DEFAULT_PACK_OBJECTS_MAX_QUEUE_LENGTH,
    ConcurrencyConfig,
    PackObjectsLimitingConfig,
)
from trio_gitaly.limits.adaptive import AdaptiveLimit, CalibrationMetrics, Calibrator, Watcher
from trio_gitaly.limits.limiter import PACK_OBJECTS, PER_RPC, ConcurrencyLimiter
from trio_gitaly.metrics import GRPC_LATENCY_BUCKETS_S

if TYPE_CHECKING:
    from trio_gitaly.config import Config

#: The `system` label of Gitaly's per-RPC limiting metrics.
SYSTEM: Final = "gitaly"
_RPC_LABELS: Final = ("system", "grpc_service", "grpc_method")


class _PromMonitor:
    """Reports one limiter's queue, admissions and drops to its metric children."""

    def __init__(
        self,
        queued: Gauge,
        in_progress: Gauge,
        acquiring: Histogram,
        dropped: Callable[[str], Counter],
    ) -> None:
        self._queued = queued
        self._in_progress = in_progress
        self._acquiring = acquiring
        self._dropped = dropped

    def queued(self) -> None:
        self._queued.inc()

    def dequeued(self) -> None:
        self._queued.dec()

    def entered(self, acquire_s: float) -> None:
        self._in_progress.inc()
        self._acquiring.observe(acquire_s)

    def exited(self) -> None:
        self._in_progress.dec()

    def dropped(self, reason: str) -> None:
        self._dropped(reason).inc()


class _PerRpcMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.acquiring = Histogram(
            "gitaly_concurrency_limiting_acquiring_seconds",
            "Time calls waited for a per-RPC concurrency slot.",
            _RPC_LABELS,
            buckets=GRPC_LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.in_progress = Gauge(
            "gitaly_concurrency_limiting_in_progress",
            "Calls holding a per-RPC concurrency slot.",
            _RPC_LABELS,
            registry=registry,
        )
        self.queued = Gauge(
            "gitaly_concurrency_limiting_queued",
            "Calls waiting for a per-RPC concurrency slot.",
            _RPC_LABELS,
            registry=registry,
        )
        self.dropped = Counter(
            "gitaly_requests_dropped",
            "Calls refused by a limiter, by reason.",
            (*_RPC_LABELS, "reason"),
            registry=registry,
        )

    def monitor(self, rpc: str) -> _PromMonitor:
        service, _, method = rpc.lstrip("/").partition("/")
        labels = (SYSTEM, service, method)
        return _PromMonitor(
            self.queued.labels(*labels),
            self.in_progress.labels(*labels),
            self.acquiring.labels(*labels),
            lambda reason: self.dropped.labels(*labels, reason),
        )


def _pack_objects_monitor(registry: CollectorRegistry) -> _PromMonitor:
    dropped = Counter(
        "gitaly_pack_objects_dropped",
        "Upload-pack sessions refused by the pack-objects limiter, by reason.",
        ["reason"],
        registry=registry,
    )
    return _PromMonitor(
        Gauge(
            "gitaly_pack_objects_queued",
            "Upload-pack sessions waiting for a pack-objects slot.",
            registry=registry,
        ),
        Gauge(
            "gitaly_pack_objects_in_progress",
            "Upload-pack sessions holding a pack-objects slot.",
            registry=registry,
        ),
        Histogram(
            "gitaly_pack_objects_acquiring_seconds",
            "Time upload-pack sessions waited for a pack-objects slot.",
            buckets=GRPC_LATENCY_BUCKETS_S,
            registry=registry,
        ),
        lambda reason: dropped.labels(reason),
    )


@dataclass(frozen=True)
class ServerLimits:
    """Every limiter of one server, and the calibration worker when a limit is adaptive."""

    per_rpc: Mapping[str, ConcurrencyLimiter]
    pack_objects: ConcurrencyLimiter
    calibrator: Calibrator | None

    def rpc_slot(
        self, rpc: str, relative_path: str, fields: MutableMapping[str, Any]
    ) -> AbstractAsyncContextManager[None]:
        """A slot of `rpc`'s limiter for a repository (none needed when not limited).

        Entering raises GitalyError RESOURCE_EXHAUSTED when refused; see
        `ConcurrencyLimiter.admitted`.
        """
        limiter = self.per_rpc.get(rpc)
        if limiter is None or not relative_path:
            return nullcontext()
        return limiter.admitted(relative_path, fields)

    def pack_objects_slot(
        self, remote_ip: str, fields: MutableMapping[str, Any]
    ) -> AbstractAsyncContextManager[None]:
        """A pack-objects slot for an upload-pack session from `remote_ip`."""
        key = pack_objects_key(remote_ip)
        if key is None:
            return nullcontext()
        return self.pack_objects.admitted(key, fields)


def build_limits(
    cfg: Config, registry: CollectorRegistry, watchers: Sequence[Watcher]
) -> ServerLimits:
    """The limiters `cfg` asks for, reporting to `registry`, calibrated from `watchers`."""
    rpc_metrics = _PerRpcMetrics(registry)
    per_rpc = {
        entry.rpc: ConcurrencyLimiter(
            _per_rpc_limit(entry),
            max_queue_length=entry.max_queue_size,
            max_queue_wait_s=entry.max_queue_wait.seconds,
            monitor=rpc_metrics.monitor(entry.rpc),
            limiting_type=PER_RPC,
        )
        for entry in cfg.concurrency
    }
    section = cfg.pack_objects_limiting
    pack_objects = ConcurrencyLimiter(
        _pack_objects_limit(section),
        max_queue_length=section.max_queue_length or DEFAULT_PACK_OBJECTS_MAX_QUEUE_LENGTH,
        max_queue_wait_s=section.max_queue_wait.seconds,
        monitor=_pack_objects_monitor(registry),
        limiting_type=PACK_OBJECTS,
    )
    adaptive = [
        limiter.limit for limiter in (*per_rpc.values(), pack_objects) if limiter.limit.adaptive
    ]
    calibrator = None
    if adaptive:
        calibrator = Calibrator(
            adaptive,
            watchers,
            CalibrationMetrics(registry),
            interval_s=cfg.adaptive_limiting.calibration_interval.seconds,
        )
    return ServerLimits(per_rpc, pack_objects, calibrator)


def _per_rpc_limit(entry: ConcurrencyConfig) -> AdaptiveLimit:
    name = f"perRPC{entry.rpc}"
    if entry.adaptive:
        return AdaptiveLimit(
            name, entry.initial_limit, minimum=entry.min_limit, maximum=entry.max_limit
        )
    return AdaptiveLimit(name, entry.max_per_repo)


def _pack_objects_limit(section: PackObjectsLimitingConfig) -> AdaptiveLimit:
    if section.adaptive:
        return AdaptiveLimit(
            "packObjects",
            section.initial_limit,
            minimum=section.min_limit,
            maximum=section.max_limit,
        )
    return AdaptiveLimit("packObjects", section.max_concurrency)


def pack_objects_key(remote_ip: str) -> str | None:
    """The pack-objects limiter's key for a client address, or None when not limited.

    "host:port" is accepted; loopback and unparsable addresses are not limited (local
    tooling and a missing address must never queue behind the limit).
    """
    address = remote_ip.strip()
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            return None
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None
    return None if ip.is_loopback else str(ip)

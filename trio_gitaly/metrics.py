"""The server's Prometheus registry and the metrics every part of it shares.

One registry per running tree (not prometheus-client's global one), so several servers
in one process, as tests start them, count separately. Components that own metrics of
their own create them on `Metrics.registry`.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)

# Gitaly's default `[prometheus] grpc_latency_buckets`, in seconds.
GRPC_LATENCY_BUCKETS_S = (0.001, 0.005, 0.025, 0.1, 0.5, 1, 10, 30, 60, 300, 1500)

_GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")


class Metrics:
    """The registry and the core metrics, with Gitaly's names and labels."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        # Platform and GC collectors hold no state of their own; registering the shared
        # instances exposes python_info and GC counts as the default registry would.
        self.registry.register(PLATFORM_COLLECTOR)
        self.registry.register(GC_COLLECTOR)
        self.connections = Counter(
            "gitaly_connections",
            "Connections accepted by the gRPC listeners, by listener type.",
            ["type"],
            registry=self.registry,
        )
        self.grpc_started = Counter(
            "grpc_server_started",
            "RPCs started on the server.",
            _GRPC_LABELS,
            registry=self.registry,
        )
        self.grpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure.",
            (*_GRPC_LABELS, "grpc_code"),
            registry=self.registry,
        )
        self.grpc_handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time the server took to handle an RPC.",
            _GRPC_LABELS,
            buckets=GRPC_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.authentications = Counter(
            "gitaly_authentications",
            "Authentication attempts, by whether the result was enforced and its status.",
            ["enforced", "status"],
            registry=self.registry,
        )
        self.build_info = Gauge(
            "gitlab_build_info",
            "The server's version and the git it runs (always 1).",
            ["version", "git_version"],
            registry=self.registry,
        )

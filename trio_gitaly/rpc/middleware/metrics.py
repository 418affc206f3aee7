"""grpc_server_* metrics with go-grpc-prometheus' names and labels, as Gitaly exports."""

from __future__ import annotations

import time

from google.protobuf.message import Message

from trio_gitaly.errors import StatusCode
from trio_gitaly.metrics import Metrics
from trio_gitaly.rpc.call import Middleware, Next, ServerCall
from trio_gitaly.rpc.errors import status_for


def grpc_type(call: ServerCall) -> str:
    """go-grpc-prometheus' name for the call's streaming shape."""
    method = call.method
    if method.client_streaming:
        return "bidi_stream" if method.server_streaming else "client_stream"
    return "server_stream" if method.server_streaming else "unary"


def measure(metrics: Metrics) -> Middleware:
    """Count started and handled RPCs, by code, and time them."""

    async def middleware(call: ServerCall, call_next: Next) -> Message | None:
        labels = (grpc_type(call), call.method.service, call.method.name)
        metrics.grpc_started.labels(*labels).inc()
        start = time.perf_counter()
        code = StatusCode.OK
        try:
            return await call_next()
        except BaseException as exc:
            code = status_for(exc, call).code
            raise
        finally:
            metrics.grpc_handling_seconds.labels(*labels).observe(time.perf_counter() - start)
            metrics.grpc_handled.labels(*labels, code.go_name).inc()

    return middleware

"""A benchmark-only server: an echo route on trio-gitaly's own gRPC layer.

The same `GrpcServer` + `serve_listener` and the same middleware chain (correlation,
metrics, access log, auth) as the real server, with its logging configured the same way
(JSON lines on stderr), serving one unary method `/bench.Echo/Echo` that answers with
its request. What an RPC costs beyond this echo is the RPC's own work.

    python -m benchmarks.echo_ours [--log-level info]

Announces `{"msg": "listening at address", "schema": "tcp", "address": ...}` on stderr
and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
from typing import Any

import trio
from google.protobuf import wrappers_pb2

from trio_gitaly.config import AuthConfig, GrpcConfig
from trio_gitaly.lifecycle import Lifecycle
from trio_gitaly.log import configure
from trio_gitaly.metrics import Metrics
from trio_gitaly.rpc.call import MethodInfo, ServerCall
from trio_gitaly.rpc.listeners import bound_address, open_tcp
from trio_gitaly.rpc.middleware import chain
from trio_gitaly.rpc.registry import Route
from trio_gitaly.rpc.server import GrpcServer, serve_listener

ECHO_PATH = "/bench.Echo/Echo"
LOG = logging.getLogger("trio_gitaly.server")


async def echo(request: Any, call: ServerCall) -> Any:
    return request


def echo_route() -> Route:
    info = MethodInfo(
        service="bench.Echo",
        name="Echo",
        request_type=wrappers_pb2.BytesValue,
        response_type=wrappers_pb2.BytesValue,
        client_streaming=False,
        server_streaming=False,
        operation="accessor",
    )
    return info, echo


async def serve(log_level: str) -> None:
    metrics, lifecycle = Metrics(), Lifecycle()
    server = GrpcServer(
        GrpcConfig(),
        {ECHO_PATH: echo_route()},
        chain(metrics=metrics, auth=AuthConfig()),
        on_accept=lambda transport: metrics.connections.labels(transport).inc(),
    )
    listeners = await open_tcp("127.0.0.1", 0)
    async with trio.open_nursery() as nursery:
        await nursery.start(
            functools.partial(
                serve_listener, server, listeners, transport="tcp", lifecycle=lifecycle
            )
        )
        lifecycle.ready = True
        address = bound_address(listeners[0])
        LOG.info("listening at address", extra={"fields": {"address": address, "schema": "tcp"}})
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                lifecycle.begin_stop(1.0)
                break


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.echo_ours")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    configure(format="json", level=args.log_level)
    trio.run(serve, args.log_level)


if __name__ == "__main__":
    main()

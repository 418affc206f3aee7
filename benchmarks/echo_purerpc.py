"""A benchmark-only server: the echo of echo_ours.py on a bare purerpc 0.8 Server.

purerpc's own connection handler and service dispatch, on the trio backend, with
nothing of ours in the path; `echo_ours` ÷ this is what our serving layer costs.
(No `from __future__ import annotations` here: purerpc reads the handler's annotations
as the message classes.)
`purerpc.Server.serve_async` binds every interface, so the listener is made here on
loopback and handed to purerpc's `ConnectionHandler`, exactly as `serve_async` does.

    python -m benchmarks.echo_purerpc

Announces `{"msg": "listening at address", "schema": "tcp", "address": ...}` on stderr
and serves until SIGTERM or SIGINT.
"""

import json
import signal
import sys

import anyio
import anyio.abc
import purerpc
from google.protobuf import wrappers_pb2
from purerpc.server import ConnectionHandler

SERVICE = "bench.Echo"


async def echo(message: wrappers_pb2.BytesValue) -> wrappers_pb2.BytesValue:
    return message


def build_service() -> purerpc.Service:
    service = purerpc.Service(SERVICE)
    service.rpc("Echo")(echo)  # what the @service.rpc decorator does
    return service


async def serve() -> None:
    server = purerpc.Server(port=0)
    service = build_service()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    line = {"msg": "listening at address", "address": f"127.0.0.1:{port}", "schema": "tcp"}
    print(json.dumps(line), file=sys.stderr, flush=True)
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, ConnectionHandler({SERVICE: service}, server))
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                group.cancel_scope.cancel()
                break


def main() -> None:
    anyio.run(serve, backend="trio")


if __name__ == "__main__":
    main()

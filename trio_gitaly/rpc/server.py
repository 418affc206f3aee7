"""The gRPC server: method table, middleware chain, and one serving node per listener.

purerpc's own `Server` cannot serve unix sockets, ignores client resets, never drains,
leaks handler exceptions as CANCELLED and ignores `grpc-timeout` (see
shared/spec/code-style-anchors.md §6), so the serving loop is ours (`connection.py`) over
purerpc's connection layer.

Draining a listener: stop accepting (the listening socket closes), send GOAWAY on each
of its connections, and give their RPCs until the grace deadline; whatever still runs
then is cancelled with the handler nursery.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from trio_gitaly import tree_state
from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.rpc.call import Handler, Middleware, ServerCall
from trio_gitaly.rpc.connection import Connection
from trio_gitaly.rpc.errors import Status
from trio_gitaly.rpc.registry import Route

if TYPE_CHECKING:
    from trio_gitaly.config import GrpcConfig
    from trio_gitaly.lifecycle import Lifecycle

LOG = logging.getLogger("trio_gitaly.rpc")


class GrpcServer:
    """What every listener serves: the routes and the middleware in front of them."""

    def __init__(
        self,
        config: GrpcConfig,
        routes: Mapping[str, Route],
        middleware: Sequence[Middleware],
        *,
        on_accept: Callable[[str], None] = lambda transport: None,
    ) -> None:
        self.config = config
        self._routes = dict(routes)
        self._services = {info.service for info, _ in self._routes.values()}
        self._middleware = tuple(middleware)
        self.on_accept = on_accept

    def lookup(self, service: str, method: str) -> Route | Status:
        """The route for a request path, or the UNIMPLEMENTED status gRPC servers send."""
        route = self._routes.get(f"/{service}/{method}")
        if route is not None:
            return route
        if service not in self._services:
            return Status(StatusCode.UNIMPLEMENTED, f"unknown service {service}")
        return Status(StatusCode.UNIMPLEMENTED, f"unknown method {method} for service {service}")

    async def invoke(self, call: ServerCall, handler: Handler) -> None:
        """Read the first request, run the middleware chain and the handler, answer.

        Cancellation: propagates; the connection turns it into the call's status.
        """
        first = await call.receive()
        if first is None and not call.method.client_streaming:
            raise GitalyError(StatusCode.INTERNAL, "grpc: the client sent no request message")
        call.request = first

        async def terminal() -> Any:
            return await handler(first, call)

        chain: Callable[[], Any] = terminal
        for middleware in reversed(self._middleware):
            chain = functools.partial(middleware, call, chain)
        response = await chain()
        if not call.method.server_streaming:
            if response is None:
                raise GitalyError(StatusCode.INTERNAL, f"{call.method.name} gave no response")
            await call.send(response)


async def serve_listener(
    server: GrpcServer,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    *,
    transport: str,
    lifecycle: Lifecycle,
    tls_handshake_timeout_s: float = 10.0,
    stop_when: trio.Event | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on `listeners` and serve them until the lifecycle stops (or,
    with `stop_when`, until that event is set; the grace deadline is the lifecycle's).

    Reports started once every socket is accepting. On stop: closes the listening
    sockets, drains the connections (GOAWAY), and cancels what still runs at the grace
    deadline. Cancellation: closes everything at once.
    """
    live: set[Connection] = set()
    stop = lifecycle.stopping if stop_when is None else stop_when

    async def handle(stream: trio.abc.Stream) -> None:
        server.on_accept(transport)
        if isinstance(stream, trio.SSLStream):
            try:
                with trio.fail_after(tls_handshake_timeout_s):
                    await stream.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError):
                return  # a client that cannot finish a handshake has nothing to serve
        connection = Connection(stream, server, transport=transport, peer=_peer(stream))
        live.add(connection)
        if stop.is_set():
            connection.drain()
        try:
            await connection.serve()
        except Exception as exc:
            # One client's connection failing must not stop the listener (trio's
            # serve_listeners treats a handler error as fatal): log it, drop the client.
            LOG.error(
                "connection failed",
                exc_info=exc,
                extra={"fields": {"peer.address": connection.peer, "transport": transport}},
            )
        finally:
            live.discard(connection)

    async with trio.open_nursery() as connections:
        async with trio.open_nursery() as accepting:
            await accepting.start(
                functools.partial(
                    trio.serve_listeners, handle, list(listeners), handler_nursery=connections
                )
            )
            task_status.started()
            await stop.wait()
            accepting.cancel_scope.cancel()
        tree_state.mark(tree_state.DRAINING)
        for connection in list(live):
            connection.drain()
        connections.cancel_scope.deadline = lifecycle.grace_deadline


def _peer(stream: trio.abc.Stream) -> str:
    inner: Any = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    sock = getattr(inner, "socket", None)
    if sock is None:
        return ""
    try:
        address = sock.getpeername()
    except OSError:
        return ""
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address) or "unix"

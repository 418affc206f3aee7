"""The HTTP listener node: hypercorn serving the app on a socket bound here.

Binding the socket ourselves (instead of handing hypercorn an address) lets a bind
error stop start-up with a clear message, lets tests use port 0 and read the port back,
and keeps the socket ours to hand over on a graceful restart later.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from trio_gitaly import tree_state
from trio_gitaly.http.app import App, Receive, Scope, Send
from trio_gitaly.rpc.listeners import LISTEN_BACKLOG, ListenError

LOG = logging.getLogger("trio_gitaly.http")

# In-flight HTTP requests (a metrics scrape) get this long once the tree stops.
HTTP_GRACE_S = 3.0
#: Request body events hypercorn queues for one request before it stops reading the
#: socket (its default is 10); each holds at most one socket read (64 KiB).
APP_QUEUE_EVENTS = 4
#: hypercorn writes a response to the socket shielded from cancellation, so a client
#: that stops reading but keeps its connection would hold its request (a clone's git
#: process, and the server's stop) forever. The kernel aborts a connection whose data
#: stays unacknowledged this long (TCP_USER_TIMEOUT; accepted sockets inherit it).
STALLED_CLIENT_TIMEOUT_S = 60.0


def bind_http(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port for HTTP; raises ListenError naming the address."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        timeout_ms = round(STALLED_CLIENT_TIMEOUT_S * 1000)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)
        try:
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


async def serve_http(
    app: App,
    sock: socket.socket,
    *,
    shutdown: trio.Event,
    grace_s: float = HTTP_GRACE_S,
    request_kind: str = tree_state.REQUEST,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on the bound socket until `shutdown` is set, then drain.

    Each request is a child of this node in the live tree while it runs, of
    `request_kind` (the gateway's are RPCs: a clone or push, as over gRPC).

    Once `shutdown` is set no connection is accepted; requests in flight get `grace_s`
    to finish, then they are cancelled. The HTTP listener outlives the gRPC drain on
    purpose: /readyz answers 503 while the server stops, which is what load balancers
    watch. Cancellation: stops at once.
    """
    config = HypercornConfig()
    config.accesslog = None
    config.errorlog = LOG
    config.graceful_timeout = grace_s
    config.max_app_queue_size = APP_QUEUE_EVENTS
    # hypercorn types its ASGI protocol and task status more narrowly than trio's.
    asgi: Any = _tracked(app, request_kind)
    status: Any = task_status
    await worker_serve(
        wrap_app(asgi, config.wsgi_max_body_size, "asgi"),
        config,
        sockets=Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[]),
        shutdown_trigger=shutdown.wait,
        task_status=status,
    )


def _tracked(app: App, kind: str) -> App:
    """`app`, with each request in the live tree under the node serving it."""

    async def tracked(scope: Scope, receive: Receive, send: Send) -> None:
        listener = tree_state.current()
        if listener is None or scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        name = f"{scope.get('method', 'GET')} {scope['path']}"
        request = listener.add(name, kind, scope, _describe_request)
        try:
            await app(scope, receive, send)
        finally:
            listener.remove(request)

    return tracked


def _describe_request(scope: Scope) -> Mapping[str, object]:
    client = scope.get("client")
    return {
        "method": f"{scope.get('method', 'GET')} {scope['path']}",
        "client": f"{client[0]}:{client[1]}" if client else "",
        "transport": scope["type"],
    }

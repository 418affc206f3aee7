"""The HTTP endpoints: /metrics, /healthz (alive), /readyz (ready to serve), and the
websocket `/-/events` (the live tree, http/events.py) when the tree gives one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import make_asgi_app

from trio_gitaly.http.events import EVENTS_PATH, reject
from trio_gitaly.lifecycle import Lifecycle
from trio_gitaly.metrics import Metrics

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def build_app(metrics: Metrics, lifecycle: Lifecycle, *, events: App | None = None) -> App:
    """The ASGI application the HTTP listener serves; `events` serves `/-/events`."""
    metrics_app = make_asgi_app(registry=metrics.registry)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            if events is not None and scope["path"] == EVENTS_PATH:
                await events(scope, receive, send)
            elif (await receive())["type"] == "websocket.connect":
                await reject(scope, send, 404, "not found")
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/metrics":
            await metrics_app(scope, receive, send)
        elif path == "/healthz":
            await _text(send, 200, "ok\n")
        elif path == "/readyz":
            if lifecycle.ready and not lifecycle.stopping.is_set():
                await _text(send, 200, "ready\n")
            elif lifecycle.stopping.is_set():
                await _text(send, 503, "stopping\n")
            else:
                await _text(send, 503, "starting\n")
        else:
            await _text(send, 404, "not found\n")

    return app


async def _text(send: Send, status: int, body: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer the ASGI lifespan protocol (shared by the HTTP apps).

    Nothing to set up or tear down: the tree owns every resource the apps read.
    """
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

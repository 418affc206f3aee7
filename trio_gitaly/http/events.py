"""`/-/events`: the live state of the tree over a websocket, for `trio-gitaly top`.

A client that passes auth gets one JSON snapshot (tree_snapshot.py) every
`SNAPSHOT_INTERVAL_S` until it leaves or the HTTP listener stops. With `[auth] token`
set, the upgrade request needs Gitaly's v2 token in `Authorization: Bearer v2...`
(rpc/middleware/auth.py): none or a malformed one is answered 401, a wrong or expired
one 403; with `transitioning = true` the failure is logged and the client served.

Everything is read from the tree as it runs when a snapshot is taken; nothing here
keeps state of its own.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Final, Protocol

import msgspec
import trio

from trio_gitaly import __version__, tree_state
from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.rpc.middleware.auth import check_token
from trio_gitaly.tree_snapshot import (
    CatfileView,
    LimiterView,
    ListenerView,
    NodeView,
    RpcView,
    Snapshot,
    WorkerView,
)

if TYPE_CHECKING:
    from trio_gitaly.config import AuthConfig
    from trio_gitaly.git.catfile import CatfileCache
    from trio_gitaly.http.app import App, Receive, Scope, Send
    from trio_gitaly.lifecycle import Lifecycle
    from trio_gitaly.limits.server_limits import ServerLimits
    from trio_gitaly.tree_state import Node, TreeState

LOG = logging.getLogger("trio_gitaly.http")

EVENTS_PATH: Final = "/-/events"
#: Time between two snapshots sent to one client.
SNAPSHOT_INTERVAL_S: Final = 0.25
#: Children of one node put in a snapshot at most (the oldest first); the rest are
#: counted in `hidden`, so a server with thousands of connections sends a bounded
#: document.
MAX_CHILDREN: Final = 100
#: The close code sent when the server stops (RFC 6455 "going away").
GOING_AWAY: Final = 1001

_STATUS_BY_CODE: Final = {StatusCode.UNAUTHENTICATED: 401, StatusCode.PERMISSION_DENIED: 403}
_ENCODER: Final = msgspec.json.Encoder()


class Server(Protocol):
    """What the snapshot reads of the running server (nursery_tree.RunningServer)."""

    @property
    def tree(self) -> TreeState: ...
    @property
    def lifecycle(self) -> Lifecycle: ...
    @property
    def addresses(self) -> Mapping[str, Sequence[str]]: ...


def take_snapshot(server: Server, limits: ServerLimits, catfile: CatfileCache) -> Snapshot:
    """The server's live state now, read from its tree, limiters and catfile cache."""
    lifecycle = server.lifecycle
    if lifecycle.stopping.is_set():
        state = "stopping"
    else:
        state = "serving" if lifecycle.ready else "starting"
    tree = _view(server.tree.root)
    tree.state = state
    return Snapshot(
        version=__version__,
        pid=os.getpid(),
        now=time.time(),
        state=state,
        tree=tree,
        listeners=_listeners(tree, server.addresses),
        rpcs=[_rpc(view) for view in _walk(tree) if view.kind == tree_state.RPC],
        workers=[
            WorkerView(name=v.name, state=v.state, last_run=v.last_run, next_run=v.next_run)
            for v in _walk(tree)
            if v.kind == tree_state.WORKER
        ],
        limits=_limits(limits),
        catfile=CatfileView(idle=catfile.idle_count, max_idle=catfile.max_idle),
    )


def _view(node: Node) -> NodeView:
    children = list(node.children.values())
    shown = children[:MAX_CHILDREN]
    info = {
        key: value if isinstance(value, (str, int, float)) or value is None else str(value)
        for key, value in node.details().items()
    }
    return NodeView(
        name=node.name,
        kind=node.kind,
        state=node.state,
        since=node.since,
        started=node.started,
        info=info,
        last_run=node.last_run,
        next_run=node.next_run,
        children=[_view(child) for child in shown],
        hidden=len(children) - len(shown),
    )


def _walk(view: NodeView) -> Iterator[NodeView]:
    yield view
    for child in view.children:
        yield from _walk(child)


def _rpc(view: NodeView) -> RpcView:
    info = view.info
    return RpcView(
        method=str(info.get("method", view.name)),
        repository=str(info.get("repository") or ""),
        client=str(info.get("client") or ""),
        transport=str(info.get("transport") or ""),
        started=view.started,
    )


def _listeners(tree: NodeView, addresses: Mapping[str, Sequence[str]]) -> list[ListenerView]:
    # nursery_tree names the gRPC listeners' nodes "listener <kind>"; the HTTP ones
    # ("gateway", "http") are named after their kind.
    by_name = {view.name: view for view in _walk(tree)}
    listeners = []
    for kind, bound in addresses.items():
        view = by_name.get(f"listener {kind}") or by_name.get(kind)
        entry = ListenerView(name=kind, addresses=list(bound), state=view.state if view else "")
        if view is not None and view.kind == tree_state.LISTENER:
            connections = [c for c in view.children if c.kind == tree_state.CONNECTION]
            entry.connections = len(connections) + view.hidden
            entry.rpcs = sum(len(c.children) + c.hidden for c in connections)
        elif view is not None:
            # hypercorn's connections are its own; those with a request in flight are
            # the distinct clients of the requests (idle keep-alives are not counted).
            requests = [c for c in view.children if c.kind in (tree_state.RPC, tree_state.REQUEST)]
            entry.connections = len({c.info.get("client") for c in requests}) + view.hidden
            entry.rpcs = sum(1 for c in requests if c.kind == tree_state.RPC)
        listeners.append(entry)
    return listeners


def _limits(limits: ServerLimits) -> list[LimiterView]:
    views = []
    for limiter in (*limits.per_rpc.values(), limits.pack_objects):
        running, queued = limiter.occupancy()
        views.append(
            LimiterView(
                name=limiter.limit.name,
                limit=max(limiter.limit.current, 0),
                running=running,
                queued=queued,
                keys=limiter.keys,
            )
        )
    return views


def events_app(
    server: Server,
    limits: ServerLimits,
    catfile: CatfileCache,
    auth: AuthConfig,
    closing: trio.Event,
) -> App:
    """The ASGI websocket app of `/-/events`.

    It sends a snapshot every `SNAPSHOT_INTERVAL_S` until the client leaves, or until
    `closing` is set (the HTTP listener stops): then it closes with `GOING_AWAY`.
    Cancellation: the client's connection is dropped (hypercorn closes it).
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        refusal = _refusal(scope, auth)
        if refusal is not None:
            status, reason = refusal
            await reject(scope, send, status, reason)
            return
        await send({"type": "websocket.accept"})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_when_gone, receive, nursery.cancel_scope)
            while not closing.is_set():
                snapshot = take_snapshot(server, limits, catfile)
                text = _ENCODER.encode(snapshot).decode()
                await send({"type": "websocket.send", "text": text})
                with trio.move_on_after(SNAPSHOT_INTERVAL_S):
                    await closing.wait()
            await send({"type": "websocket.close", "code": GOING_AWAY})
            nursery.cancel_scope.cancel()

    return app


async def reject(scope: Scope, send: Send, status: int, reason: str) -> None:
    """Refuse a websocket upgrade with an HTTP status and a one-line body.

    Servers without ASGI's denial-response extension can only say 403.
    Cancellation: raises Cancelled; hypercorn closes the connection.
    """
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close"})
        return
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": f"{reason}\n".encode()})


def _refusal(scope: Scope, auth: AuthConfig) -> tuple[int, str] | None:
    if not auth.token:
        return None
    header = None
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            header = value.decode("latin-1")
            break
    try:
        check_token(header, auth.token, time.time())
    except GitalyError as error:
        if auth.transitioning:
            LOG.warning(
                "authentication failed, allowed because auth is transitioning",
                extra={"fields": {"error": error.message, "path": EVENTS_PATH}},
            )
            return None
        return _STATUS_BY_CODE.get(error.code, 403), error.message
    return None


async def _cancel_when_gone(receive: Receive, scope: trio.CancelScope) -> None:
    # The client sends nothing we need; what it sends is read so that its leaving is seen.
    while (await receive())["type"] != "websocket.disconnect":
        pass
    scope.cancel()

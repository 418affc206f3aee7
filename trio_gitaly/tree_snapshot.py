"""The document `/-/events` sends several times a second, and `trio-gitaly top` reads.

One snapshot is one JSON document (msgspec). Times are wall-clock epoch seconds; `now`
is the server's clock when the snapshot was taken, so ages are `now - started`
whatever the reader's clock says. `tree` is the nursery tree as it runs (tree_state.py);
`listeners`, `rpcs` and `workers` are read from that same tree, flattened for scripts.
"""

from __future__ import annotations

import msgspec


class NodeView(msgspec.Struct, kw_only=True):
    """One node of the tree and what it started."""

    name: str
    kind: str  # tree_state: node, listener, connection, rpc, worker
    state: str  # starting, running, draining (the root: starting, serving, stopping)
    since: float  # when it entered its state
    started: float
    info: dict[str, str | int | float | None] = {}
    last_run: float | None = None
    next_run: float | None = None
    children: list[NodeView] = []
    # Children left out to keep the document small (the oldest are kept).
    hidden: int = 0


class ListenerView(msgspec.Struct, kw_only=True):
    """A listening address and what it serves right now."""

    name: str  # "unix", "internal", "tcp", "tls", "gateway", "http"
    addresses: list[str]
    state: str
    # Open gRPC connections and their RPCs; None where they are not counted (HTTP).
    connections: int | None = None
    rpcs: int | None = None


class RpcView(msgspec.Struct, kw_only=True):
    """One in-flight RPC."""

    method: str  # "/gitaly.SSHService/SSHUploadPack"
    repository: str  # "<storage>/<relative path>", "" for RPCs without one
    client: str  # the peer address
    transport: str  # unix, tcp, tls
    started: float


class WorkerView(msgspec.Struct, kw_only=True):
    """One running background job."""

    name: str
    state: str
    last_run: float | None
    next_run: float | None


class LimiterView(msgspec.Struct, kw_only=True):
    """One concurrency limiter's queue."""

    name: str  # Gitaly's limit names: "perRPC/gitaly.SSHService/SSHUploadPack", "packObjects"
    limit: int  # current slots per key; 0: unlimited
    running: int
    queued: int
    keys: int  # keys (repositories, client IPs) with calls running or queued


class CatfileView(msgspec.Struct, kw_only=True):
    """The catfile cache: idle processes, and how many it keeps at most."""

    idle: int
    max_idle: int


class Snapshot(msgspec.Struct, kw_only=True):
    """The server's live state at `now`."""

    version: str
    pid: int
    now: float
    state: str  # starting, serving, stopping
    tree: NodeView
    listeners: list[ListenerView]
    rpcs: list[RpcView]
    workers: list[WorkerView]
    limits: list[LimiterView]
    catfile: CatfileView


def decode(document: bytes | str) -> Snapshot:
    """A snapshot from its JSON document; raises msgspec.ValidationError if it is not one."""
    return msgspec.json.decode(document, type=Snapshot)

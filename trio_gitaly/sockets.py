"""Every socket the server listens on, bound before start-up reports ready.

Binding all of them up front turns a taken port or a bad address into a clean start-up
error, before any client could have been told the server is up. After a graceful restart
(upgrade.py) the external ones are not bound but adopted: the predecessor's sockets,
matched by kind and configured address.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import trio

from trio_gitaly.config import Config, ListenAddress
from trio_gitaly.http.serve import bind_http
from trio_gitaly.rpc import listeners as bind
from trio_gitaly.upgrade import Handover

GrpcListeners = list[tuple[str, Sequence[trio.abc.Listener[trio.abc.Stream]]]]


@dataclass
class BoundSockets:
    """The bound sockets: gRPC listeners by kind, and the two HTTP sockets if configured."""

    grpc: GrpcListeners = field(default_factory=list)
    http: socket.socket | None = None
    gateway: socket.socket | None = None
    # (kind, configured address) -> fds: what a successor inherits (not the internal socket)
    inheritable: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def addresses(self) -> dict[str, list[str]]:
        """Listener kind ("unix", "internal", "tcp", "tls", "http", "gateway") -> addresses."""
        addresses: dict[str, list[str]] = {}
        for kind, listeners in self.grpc:
            addresses.setdefault(kind, []).extend(
                bind.bound_address(listener) for listener in listeners
            )
        for kind, sock in (("http", self.http), ("gateway", self.gateway)):
            if sock is not None:
                addresses[kind] = [socket_address(sock)]
        return addresses


@contextlib.asynccontextmanager
async def bound_sockets(
    cfg: Config, internal_socket: str, handover: Handover | None = None
) -> AsyncIterator[BoundSockets]:
    """Bind every listener (gRPC in Gitaly's order, then HTTP, then the gateway).

    Listeners `handover` inherited are adopted instead; inherited ones the config no
    longer names are closed. Raises ListenError (or OSError for TLS files) naming what
    failed, with whatever was bound so far closed. On exit every socket is closed and the
    internal socket file removed; the `socket_path` file only while the handover says the
    listeners are ours alone (not once a successor serves them, nor before a predecessor
    heard we are ready).
    """
    handover = handover or Handover()
    bound = BoundSockets()
    try:
        if cfg.socket_path:
            adopted = handover.take("unix", cfg.socket_path)
            unix = _listener(adopted[0]) if adopted else await bind.open_unix(cfg.socket_path)
            bound.grpc.append(("unix", [unix]))
            bound.inheritable["unix", cfg.socket_path] = [unix.socket.fileno()]
        bound.grpc.append(("internal", [await bind.open_unix(internal_socket)]))
        if cfg.listen_addr is not None:
            tcp = await _tcp(handover, bound, "tcp", cfg.listen_addr)
            bound.grpc.append(("tcp", tcp))
        if cfg.tls_listen_addr is not None:
            context = bind.tls_context(cfg.tls.certificate_path, cfg.tls.key_path)
            tls = await _tcp(handover, bound, "tls", cfg.tls_listen_addr)
            bound.grpc.append(("tls", [trio.SSLListener(inner, context) for inner in tls]))
        bound.http = _http(handover, bound, "http", cfg.prometheus_listen_addr)
        bound.gateway = _http(handover, bound, "gateway", cfg.gateway.listen_addr)
        handover.close_unused()
        yield bound
    finally:
        for _, listeners in bound.grpc:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
        for sock in (bound.http, bound.gateway):
            if sock is not None:
                sock.close()
        # Only files we bound (or adopted): a path refused because it is not a socket stays.
        kinds = {kind for kind, _ in bound.grpc}
        socket_paths = [internal_socket] if "internal" in kinds else []
        if "unix" in kinds and handover.owns_listeners:
            socket_paths.append(cfg.socket_path)
        for path in socket_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def socket_address(sock: socket.socket) -> str:
    """host:port of a bound TCP socket ("[::1]:8076" for IPv6)."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listener(sock: socket.socket) -> trio.SocketListener:
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


async def _tcp(
    handover: Handover, bound: BoundSockets, kind: str, address: ListenAddress
) -> list[trio.SocketListener]:
    adopted = handover.take(kind, str(address))
    if adopted is not None:
        listeners = [_listener(sock) for sock in adopted]
    else:
        listeners = await bind.open_tcp(_host(address), address.port)
    bound.inheritable[kind, str(address)] = [inner.socket.fileno() for inner in listeners]
    return listeners


def _http(
    handover: Handover, bound: BoundSockets, kind: str, address: ListenAddress | None
) -> socket.socket | None:
    if address is None:
        return None
    adopted = handover.take(kind, str(address))
    sock = adopted[0] if adopted else bind_http(address.host, address.port)
    bound.inheritable[kind, str(address)] = [sock.fileno()]
    return sock


def _host(address: ListenAddress) -> str | None:
    # An empty host (":8075") means every interface, which trio spells None.
    return address.host or None

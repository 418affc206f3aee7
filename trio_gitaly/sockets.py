"""Every socket the server listens on, bound before start-up reports ready.

Binding all of them up front turns a taken port or a bad address into a clean start-up
error, before any client could have been told the server is up.
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

GrpcListeners = list[tuple[str, Sequence[trio.abc.Listener[trio.abc.Stream]]]]


@dataclass
class BoundSockets:
    """The bound sockets: gRPC listeners by kind, and the two HTTP sockets if configured."""

    grpc: GrpcListeners = field(default_factory=list)
    http: socket.socket | None = None
    gateway: socket.socket | None = None

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
async def bound_sockets(cfg: Config, internal_socket: str) -> AsyncIterator[BoundSockets]:
    """Bind every listener (gRPC in Gitaly's order, then HTTP, then the gateway).

    Raises ListenError (or OSError for TLS files) naming what failed, with whatever was
    bound so far closed. On exit every socket is closed and unix socket files removed.
    """
    bound = BoundSockets()
    socket_paths: list[str] = []
    try:
        if cfg.socket_path:
            bound.grpc.append(("unix", [await bind.open_unix(cfg.socket_path)]))
            socket_paths.append(cfg.socket_path)
        bound.grpc.append(("internal", [await bind.open_unix(internal_socket)]))
        socket_paths.append(internal_socket)
        if cfg.listen_addr is not None:
            address = cfg.listen_addr
            bound.grpc.append(("tcp", await bind.open_tcp(_host(address), address.port)))
        if cfg.tls_listen_addr is not None:
            context = bind.tls_context(cfg.tls.certificate_path, cfg.tls.key_path)
            address = cfg.tls_listen_addr
            bound.grpc.append(("tls", await bind.open_tls(_host(address), address.port, context)))
        bound.http = _bind_http(cfg.prometheus_listen_addr)
        bound.gateway = _bind_http(cfg.gateway.listen_addr)
        yield bound
    finally:
        for _, listeners in bound.grpc:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
        for sock in (bound.http, bound.gateway):
            if sock is not None:
                sock.close()
        for path in socket_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def socket_address(sock: socket.socket) -> str:
    """host:port of a bound TCP socket ("[::1]:8076" for IPv6)."""
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_http(address: ListenAddress | None) -> socket.socket | None:
    return None if address is None else bind_http(address.host, address.port)


def _host(address: ListenAddress) -> str | None:
    # An empty host (":8075") means every interface, which trio spells None.
    return address.host or None

"""Opening the gRPC listening sockets: unix, TCP and TLS.

Sockets are bound here, before any node reports started, so a bind failure stops
start-up with a message naming the address instead of a half-started server.
"""

from __future__ import annotations

import os
import ssl
import stat

import trio

# Pending connections the kernel may queue before accept; trio's default is the
# system maximum, which is what a server that gets bursts of clones wants.
LISTEN_BACKLOG = 4096


class ListenError(Exception):
    """A listener could not be opened; the message names the address and the cause."""


async def open_unix(path: str) -> trio.SocketListener:
    """Bind a unix socket at `path`, replacing a stale socket file left by a crash.

    Anything at `path` that is not a socket is refused rather than deleted.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(mode):
            raise ListenError(f"cannot listen on {path!r}: it exists and is not a socket")
        os.unlink(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {path!r}: {exc.strerror or exc}") from None
    return trio.SocketListener(sock)


async def open_tcp(host: str | None, port: int) -> list[trio.SocketListener]:
    """Bind TCP on host:port (a name may give one socket per address family).

    `host` None binds every interface.
    """
    try:
        return await trio.open_tcp_listeners(port, host=host, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host or '*'}:{port}: {exc.strerror or exc}") from None


def tls_context(certificate_path: str, key_path: str) -> ssl.SSLContext:
    """A server context for gRPC: TLS 1.2 or newer, ALPN "h2" (gRPC clients insist)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    try:
        context.load_cert_chain(certificate_path, key_path)
    except (OSError, ssl.SSLError) as exc:
        raise ListenError(f"cannot load TLS certificate {certificate_path!r}: {exc}") from None
    return context


def bound_address(listener: trio.abc.Listener[trio.abc.Stream]) -> str:
    """Where a listener accepts: "host:port" or the socket path."""
    inner = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
    assert isinstance(inner, trio.SocketListener)
    address = inner.socket.getsockname()
    if isinstance(address, tuple):
        host = f"[{address[0]}]" if ":" in address[0] else address[0]
        return f"{host}:{address[1]}"
    return str(address)

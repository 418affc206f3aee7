"""Dialling a trio-gitaly (or Gitaly) server: addresses and the v2 auth token."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Final

#: Address schemes a client accepts: a unix socket path, or host:port in clear or TLS.
SCHEMES: Final = ("unix", "tcp", "tls")


class AddressError(ValueError):
    """An address a client cannot dial; the message says why."""


def sign(token: str, timestamp: int) -> str:
    """The v2 bearer credential for `timestamp`: "v2.<hex HMAC-SHA256>.<timestamp>"."""
    # Deferred: OpenSSL's hashlib is a tenth of the ssh helper's imports, and most
    # sessions carry no token.
    import hashlib
    import hmac

    message = str(timestamp)
    signature = hmac.new(token.encode(), message.encode(), hashlib.sha256).hexdigest()
    return f"v2.{signature}.{message}"


#: Where the clients look for the server's token when no token file is given.
TOKEN_ENV: Final = "TRIO_GITALY_TOKEN"


def client_token(path: str | None) -> str:
    """The token in file `path` (stripped), or `$TRIO_GITALY_TOKEN` when no file is given.

    Raises:
        OSError: the file cannot be read.
    """
    if path is None:
        return os.environ.get(TOKEN_ENV, "")
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def auth_metadata(token: str) -> list[tuple[str, str]]:
    """The metadata authenticating a call now with `token` (none when empty)."""
    if not token:
        return []
    return [("authorization", f"Bearer {sign(token, int(time.time()))}")]


def parse_address(address: str) -> tuple[str, str]:
    """Split a client address into its scheme and target ("unix", "/run/x.sock").

    Raises:
        AddressError: an unknown scheme or an empty target.
    """
    scheme, sep, rest = address.partition("://")
    if not sep or scheme not in SCHEMES or not rest.strip("/"):
        raise AddressError(
            f"invalid address {address!r}: use unix:///path, tcp://host:port or tls://host:port"
        )
    return scheme, rest


@dataclass(frozen=True)
class Dialled:
    """A connected socket and what an HTTP/2 request on it names."""

    sock: socket.socket
    scheme: str  # ":scheme": "http" or "https"
    authority: str  # ":authority": the host, or "localhost" for a unix socket


def dial(scheme: str, target: str, *, ca_file: str | None = None) -> Dialled:
    """A blocking socket to a `parse_address` target, TLS (ALPN h2) for "tls".

    `ca_file` (PEM) replaces the system's trusted roots for TLS.

    Raises:
        AddressError: a tcp or tls target without a port.
        OSError: the connection, or the TLS handshake and verification, failed.
    """
    if scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        return Dialled(sock, "http", "localhost")
    host, sep, port = target.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit():
        raise AddressError(f"invalid address {target!r}: expected host:port")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if scheme == "tcp":
        return Dialled(sock, "http", host)
    import ssl  # deferred: only TLS pays for it

    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["h2"])
    try:
        return Dialled(context.wrap_socket(sock, server_hostname=host), "https", host)
    except OSError:
        sock.close()
        raise

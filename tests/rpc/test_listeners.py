"""Opening listeners: stale unix sockets, paths that are not sockets, TLS settings."""

from __future__ import annotations

import os
import socket
import ssl

import pytest
import trio
import trustme

from trio_gitaly.rpc.listeners import ListenError, open_tcp, open_unix, tls_context


async def test_stale_socket_is_replaced(short_dir: str) -> None:
    path = os.path.join(short_dir, "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # a crashed server leaves the file behind
    listener = await open_unix(path)
    async with listener:
        client = await trio.open_unix_socket(path)
        await client.aclose()


async def test_non_socket_path_is_refused_and_kept(short_dir: str) -> None:
    path = os.path.join(short_dir, "precious")
    with open(path, "w") as file:
        file.write("data")
    with pytest.raises(ListenError, match="exists and is not a socket"):
        await open_unix(path)
    with open(path) as file:
        assert file.read() == "data"


async def test_port_in_use_names_the_address() -> None:
    (first,) = await open_tcp("127.0.0.1", 0)
    port = first.socket.getsockname()[1]
    async with first:
        with pytest.raises(ListenError, match=f"127.0.0.1:{port}"):
            await open_tcp("127.0.0.1", port)


def test_tls_context_is_tls12_or_newer_with_h2(short_dir: str) -> None:
    cert = trustme.CA().issue_cert("localhost")
    cert_path, key_path = os.path.join(short_dir, "c.pem"), os.path.join(short_dir, "k.pem")
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    context = tls_context(cert_path, key_path)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    with pytest.raises(ListenError, match="cannot load TLS certificate"):
        tls_context(key_path, cert_path)

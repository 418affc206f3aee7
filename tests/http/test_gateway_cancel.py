"""The HTTP gateway when the client goes away: its git processes end within a second.

The git client talks to the gateway through a proxy that passes `PROXY_BYTES_PER_S`
each way, so that its transfer is certainly in flight when it is killed (with its whole
process group). A killed clone's connection breaks by itself. A killed push's does not
at once: TCP delivers what the client had sent before its FIN, and the slow proxy would
stretch that to seconds, so the proxy drops its connection to the gateway when the
client is killed, as a fast network would have delivered the rest by then. One test
closes a plain socket mid-response instead, and one stops reading but stays connected.

And the gateway in the tree's life: bound before start-up reports ready (a taken port is a
clean start-up error), drained on stop, cancelled at the end of the grace period.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio

from tests.helpers import make_config
from tests.http.gateway_support import (
    CLIENT_ENV,
    Gateway,
    fsck,
    git,
    kill_group,
    processes_of,
    refs,
    start_gateway,
)
from trio_gitaly.config import GatewayConfig, ListenAddress
from trio_gitaly.config_values import Duration
from trio_gitaly.http import serve
from trio_gitaly.nursery_tree import StartupError
from trio_gitaly.nursery_tree import serve as serve_tree

# Random bytes do not compress: the pack is this big, more than the socket buffers.
BIG_BLOB_BYTES = 6 * 1024 * 1024
PROXY_BYTES_PER_S = 1024 * 1024
PROXY_CHUNK_BYTES = 16 * 1024
GONE_WITHIN_S = 1.0
STALL_TIMEOUT_S = 1.0
GRACE_S = 1.0
LOCAL = "127.0.0.1"


def big_repository(path: str, blob_bytes: int = BIG_BLOB_BYTES) -> None:
    data = os.urandom(blob_bytes)
    stream = (
        b"blob\nmark :1\ndata %d\n%s\n" % (len(data), data)
        + b"commit refs/heads/main\ncommitter A <a@example.com> 1700000000 +0000\ndata 4\nbig\n"
        + b"M 100644 :1 big.bin\n\n"
    )
    subprocess.run(["git", "init", "--quiet", "--bare", path], check=True, env=CLIENT_ENV)
    subprocess.run(
        ["git", "-C", path, "fast-import", "--quiet"], input=stream, check=True, env=CLIENT_ENV
    )


def serving(repo: str, command: str) -> list[str]:
    """The server's git processes of a POST (not the advertisement) running `command`."""
    return [
        cmdline
        for cmdline in processes_of(repo)
        if command in cmdline and "--stateless-rpc" in cmdline and "--advertise-refs" not in cmdline
    ]


async def _pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    try:
        while data := await source.receive_some(PROXY_CHUNK_BYTES):
            await sink.send_all(data)
            await trio.sleep(len(data) / PROXY_BYTES_PER_S)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


@dataclass
class Proxy:
    """A TCP proxy to the gateway passing `PROXY_BYTES_PER_S` each way."""

    address: str
    cut_event: trio.Event

    def cut(self) -> None:
        """Close every relayed connection now."""
        self.cut_event.set()


@asynccontextmanager
async def slow_proxy(gateway: Gateway) -> AsyncIterator[Proxy]:
    host, port = gateway.address.rsplit(":", 1)
    cut = trio.Event()

    async def relay(client: trio.SocketStream) -> None:
        try:
            upstream = await trio.open_tcp_stream(host, int(port))
        except OSError:  # the gateway stopped accepting: so does the proxy
            await client.aclose()
            return
        async with client, upstream, trio.open_nursery() as nursery:

            async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
                await _pump(source, sink)
                nursery.cancel_scope.cancel()  # one side is gone: so is the other

            async def cut_off() -> None:
                await cut.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(pump, client, upstream)
            nursery.start_soon(pump, upstream, client)
            nursery.start_soon(cut_off)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, relay, 0, host=LOCAL))
        yield Proxy(f"{LOCAL}:{listeners[0].socket.getsockname()[1]}", cut)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def client(argv: Sequence[str]) -> AsyncIterator[trio.Process]:
    """A git client in its own process group; killed and reaped when the block ends."""
    process = await trio.lowlevel.open_process(
        list(argv),
        env=CLIENT_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        kill_group(process)
        await process.wait()


async def sending_pack(repo: str) -> None:
    """Wait until the server's upload-pack sends a pack (not a v2 ls-refs, for one)."""
    with trio.fail_after(10):
        while not any("pack-objects" in cmdline for cmdline in processes_of(repo)):
            await trio.sleep(0.005)


async def kill_while_serving(process: trio.Process, repo: str, command: str) -> None:
    """Kill the client mid-transfer: once the server's `command` has run for a while."""
    with trio.fail_after(10):
        while not serving(repo, command):
            await trio.sleep(0.005)
    await trio.sleep(0.3)
    assert serving(repo, command), "the transfer ended before the client was killed"
    kill_group(process)
    await process.wait()


async def assert_gone_within(repo: str, seconds: float) -> float:
    start = time.monotonic()
    while processes_of(repo):
        if time.monotonic() - start > seconds:
            raise AssertionError(f"still running after {seconds}s: {processes_of(repo)}")
        await trio.sleep(0.02)
    return time.monotonic() - start


async def test_killed_clone(gateway: Gateway, short_dir: str) -> None:
    repo = gateway.repo("big.git")
    big_repository(repo)
    async with slow_proxy(gateway) as proxy:
        url = f"http://{proxy.address}/default/big.git"
        async with client(
            ["git", "clone", "--bare", url, os.path.join(short_dir, "c")]
        ) as git_clone:
            await kill_while_serving(git_clone, repo, "upload-pack")
            await assert_gone_within(repo, GONE_WITHIN_S)
    # The gateway still serves.
    await git(
        "clone", "--quiet", "--bare", gateway.url("big.git"), os.path.join(short_dir, "again")
    )


async def stalled_upload_pack(gateway: Gateway, repo: str) -> trio.SocketStream:
    """A fetch by hand whose client reads the response headers and then stops reading."""
    oid = (await refs(repo))["refs/heads/main"]
    want = f"want {oid}\n".encode()
    body = b"%04x" % (len(want) + 4) + want + b"0000" + b"0009done\n"
    host, port = gateway.address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    head = (
        f"POST /default/big.git/git-upload-pack HTTP/1.1\r\nHost: {gateway.address}\r\n"
        "Content-Type: application/x-git-upload-pack-request\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    await stream.send_all(head + body)
    assert (await stream.receive_some(64 * 1024)).startswith(b"HTTP/1.1 200")
    with trio.fail_after(10):
        while not serving(repo, "upload-pack"):
            await trio.sleep(0.005)
    await trio.sleep(0.3)  # the socket buffers fill up; git waits for us
    assert serving(repo, "upload-pack")
    return stream


async def test_client_that_stops_reading_and_closes(gateway: Gateway) -> None:
    repo = gateway.repo("big.git")
    big_repository(repo)
    stream = await stalled_upload_pack(gateway, repo)
    await stream.aclose()
    await assert_gone_within(repo, GONE_WITHIN_S)


async def test_client_that_stops_reading_and_stays(
    nursery: trio.Nursery, short_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # hypercorn's socket writes cannot be cancelled: only the kernel's timeout on data
    # nobody acknowledges ends such a request (shortened here from a minute).
    monkeypatch.setattr(serve, "STALLED_CLIENT_TIMEOUT_S", STALL_TIMEOUT_S)
    gateway = await start_gateway(nursery, short_dir)
    repo = gateway.repo("big.git")
    big_repository(repo)
    async with await stalled_upload_pack(gateway, repo):
        await assert_gone_within(repo, STALL_TIMEOUT_S + GONE_WITHIN_S)


async def test_killed_push(gateway: Gateway, short_dir: str) -> None:
    repo = gateway.repo("push.git")
    await git("init", "--quiet", "--bare", repo)
    source = os.path.join(short_dir, "source.git")
    big_repository(source)
    objects_before = sorted(os.listdir(os.path.join(repo, "objects")))
    async with slow_proxy(gateway) as proxy:
        url = f"http://{proxy.address}/default/push.git"
        async with client(["git", "-C", source, "push", url, "main"]) as git_push:
            await kill_while_serving(git_push, repo, "receive-pack")
            proxy.cut()
            # receive-pack gets its grace period to remove its quarantine, within the second.
            await assert_gone_within(repo, GONE_WITHIN_S)
    assert await refs(repo) == {}
    assert sorted(os.listdir(os.path.join(repo, "objects"))) == objects_before
    await fsck(repo)


async def test_stop_drains_the_gateway(nursery: trio.Nursery, short_dir: str) -> None:
    gateway = await start_gateway(nursery, short_dir)
    repo = gateway.repo("big.git")
    big_repository(repo, blob_bytes=PROXY_BYTES_PER_S // 2)
    clone = os.path.join(short_dir, "c")
    async with slow_proxy(gateway) as proxy, trio.open_nursery() as clients:
        url = f"http://{proxy.address}/default/big.git"
        clients.start_soon(functools.partial(git, "clone", "--quiet", "--bare", url, clone))
        await sending_pack(repo)
        gateway.server.stop()
        await trio.sleep(0.1)
        # No new requests; the clone in flight finishes (the nursery waits for it).
        host, port = gateway.address.rsplit(":", 1)
        with pytest.raises(OSError, match="all attempts to connect"):
            await trio.open_tcp_stream(host, int(port))
    assert await refs(clone) == await refs(repo)


async def test_stop_cancels_what_outlasts_the_grace_period(
    nursery: trio.Nursery, short_dir: str
) -> None:
    grace = Duration(GRACE_S)
    gateway = await start_gateway(nursery, short_dir, graceful_restart_timeout=grace)
    repo = gateway.repo("big.git")
    big_repository(repo)
    async with slow_proxy(gateway) as proxy:
        url = f"http://{proxy.address}/default/big.git"
        async with client(
            ["git", "clone", "--bare", url, os.path.join(short_dir, "c")]
        ) as git_clone:
            await sending_pack(repo)
            gateway.server.stop()
            await assert_gone_within(repo, GRACE_S + GONE_WITHIN_S)
            assert await git_clone.wait() != 0


async def test_gateway_port_in_use_fails_start_up(short_dir: str) -> None:
    listeners = await trio.open_tcp_listeners(0, host=LOCAL)
    port = listeners[0].socket.getsockname()[1]
    taken = GatewayConfig(listen_addr=ListenAddress(LOCAL, port))
    cfg = make_config(short_dir, gateway=taken)
    with pytest.raises(StartupError, match=f"cannot listen on {LOCAL}:{port}"):
        await serve_tree(cfg)
    for listener in listeners:
        await listener.aclose()
    assert os.listdir(cfg.runtime_dir) == []

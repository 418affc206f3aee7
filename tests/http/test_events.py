"""`/-/events` on a real server: snapshots over a websocket, v2 token auth, goodbye on stop."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import httpx
import msgspec
import pytest
import trio
from trio_websocket import CloseReason, ConnectionClosed, ConnectionRejected, wrap_client_stream

from tests.helpers import Client, make_config
from tests.http.gateway_support import start_gateway
from tests.limits.held_calls import HeldCall
from tests.repos import rich_repository
from trio_gitaly.config import AuthConfig, Config
from trio_gitaly.http.events import GOING_AWAY, SNAPSHOT_INTERVAL_S
from trio_gitaly.nursery_tree import RunningServer, serve
from trio_gitaly.rpc.middleware.auth import sign
from trio_gitaly.tree_snapshot import Snapshot, decode

TOKEN = "the shared secret"


def bearer(credential: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {credential}".encode())]


async def watch(
    running: RunningServer,
    on_message: Callable[[str], bool],
    *,
    path: str = "/-/events",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> CloseReason | None:
    """Open `path`, hand each message to `on_message` until it returns False (None is
    returned) or the server closes (its reason is returned).

    Raises:
        ConnectionRejected: the server refused the upgrade.
    """
    host, port = running.addresses["http"][0].rsplit(":", 1)
    # Our own stream, closed here whatever happens: trio-websocket 0.12 leaves its own
    # open when the server refuses the handshake or closes first.
    with trio.fail_after(15):
        async with await trio.open_tcp_stream(host, int(port)) as stream:
            try:
                async with trio.open_nursery() as nursery:
                    ws = await wrap_client_stream(
                        nursery, stream, host, path, extra_headers=headers
                    )
                    try:
                        while on_message(await ws.get_message()):
                            pass
                    except ConnectionClosed as closed:
                        return closed.reason
                    await ws.aclose()
            except* ConnectionRejected as group:
                raise group.exceptions[0] from None
    return None


async def snapshots(
    running: RunningServer, count: int, headers: list[tuple[bytes, bytes]] | None = None
) -> list[Snapshot]:
    """The first `count` snapshots the server sends."""
    documents: list[str] = []

    def keep(document: str) -> bool:
        documents.append(document)
        return len(documents) < count

    await watch(running, keep, headers=headers)
    return [decode(document) for document in documents]


async def refusal(
    running: RunningServer,
    path: str = "/-/events",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, bytes]:
    """The status and body of a refused upgrade."""
    with pytest.raises(ConnectionRejected) as rejected:
        await watch(running, lambda document: False, path=path, headers=headers)
    return rejected.value.status_code, rejected.value.body or b""


async def start(nursery: trio.Nursery, cfg: Config) -> RunningServer:
    running: RunningServer = await nursery.start(serve, cfg)
    return running


async def test_a_snapshot_shows_the_tree_listeners_limits_and_workers(
    server: RunningServer,
) -> None:
    (snapshot,) = await snapshots(server, 1)
    assert snapshot.state == "serving"
    assert snapshot.tree.name == "root" and snapshot.tree.state == "serving"
    children = {child.name: child for child in snapshot.tree.children}
    assert {"workers", "listeners", "http"} <= set(children)
    assert {c.name for c in children["listeners"].children} >= {"listener tcp", "listener unix"}
    listeners = {listener.name: listener for listener in snapshot.listeners}
    assert listeners["tcp"].addresses == server.addresses["tcp"]
    assert listeners["tcp"].connections == 0 and listeners["tcp"].rpcs == 0
    # This watcher's own request is in flight on the HTTP listener; it is no RPC.
    assert listeners["http"].connections == 1 and listeners["http"].rpcs == 0
    assert [limiter.name for limiter in snapshot.limits] == ["packObjects"]
    assert snapshot.catfile.max_idle == 100
    assert "tempdir cleaner" in {worker.name for worker in snapshot.workers}
    assert abs(snapshot.now - time.time()) < 5


async def test_snapshots_keep_coming_several_a_second(server: RunningServer) -> None:
    start = trio.current_time()
    times = [snapshot.now for snapshot in await snapshots(server, 5)]
    elapsed = trio.current_time() - start
    assert times == sorted(times) and len(set(times)) == 5
    # Five snapshots: the first at once, then one per interval.
    assert 3 * SNAPSHOT_INTERVAL_S <= elapsed < 10 * SNAPSHOT_INTERVAL_S


async def test_documents_are_plain_json(server: RunningServer) -> None:
    documents: list[str] = []
    await watch(server, lambda document: documents.append(document) or False)
    parsed = msgspec.json.decode(documents[0])
    assert parsed["tree"]["name"] == "root" and isinstance(parsed["rpcs"], list)


async def test_other_websocket_paths_are_not_found(server: RunningServer) -> None:
    assert await refusal(server, "/-/nope") == (404, b"not found\n")


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        (None, 401, b"authentication required\n"),
        (bearer("not-a-token"), 401, b"authentication required\n"),
        (
            bearer(sign("another secret", int(time.time()))),
            403,
            b"permission denied: wrong hmac signature\n",
        ),
        (
            bearer(sign(TOKEN, int(time.time()) - 3600)),
            403,
            b"permission denied: token has expired\n",
        ),
    ],
    ids=["no-token", "malformed", "wrong-secret", "expired"],
)
async def test_a_token_is_needed_when_auth_is_on(
    nursery: trio.Nursery,
    short_dir: str,
    headers: list[tuple[bytes, bytes]] | None,
    status: int,
    reason: bytes,
) -> None:
    running = await start(nursery, make_config(short_dir, auth=AuthConfig(token=TOKEN)))
    assert await refusal(running, headers=headers) == (status, reason)


async def test_a_good_token_gets_snapshots(nursery: trio.Nursery, short_dir: str) -> None:
    running = await start(nursery, make_config(short_dir, auth=AuthConfig(token=TOKEN)))
    (snapshot,) = await snapshots(running, 1, bearer(sign(TOKEN, int(time.time()))))
    assert snapshot.tree.name == "root"


async def test_transitioning_auth_lets_a_client_without_token_in(
    nursery: trio.Nursery, short_dir: str
) -> None:
    cfg = make_config(short_dir, auth=AuthConfig(token=TOKEN, transitioning=True))
    running = await start(nursery, cfg)
    (snapshot,) = await snapshots(running, 1)
    assert snapshot.state == "serving"


async def test_the_client_sees_the_drain_then_a_goodbye(
    short_dir: str, connect: Callable[[str], Client]
) -> None:
    cfg = make_config(short_dir)
    rich_repository(os.path.join(cfg.storage[0].path, "a.git"))
    draining: list[Snapshot] = []
    async with trio.open_nursery() as nursery:
        running = await start(nursery, cfg)
        # A call in flight keeps the drain going until the test lets it finish.
        call = HeldCall(connect(running.addresses["tcp"][0]), "a.git")
        await call.wait_admitted()

        def follow(document: str) -> bool:
            snapshot = decode(document)
            listeners = {listener.name: listener for listener in snapshot.listeners}
            if snapshot.state == "serving":
                running.stop()
            elif listeners["tcp"].state == "draining" and not draining:
                draining.append(snapshot)
                call.release()
            return True

        reason = await watch(running, follow)
    assert reason is not None and reason.code == GOING_AWAY
    assert [rpc.repository for rpc in draining[0].rpcs] == ["default/a.git"]
    assert call.error is None


async def test_a_gateway_request_in_flight_is_listed_with_the_rpcs(
    nursery: trio.Nursery, short_dir: str
) -> None:
    gateway = await start_gateway(nursery, short_dir)
    rich_repository(gateway.repo("a.git"))
    finish, posted = trio.Event(), trio.Event()

    async def body():  # type: ignore[no-untyped-def]
        await finish.wait()
        yield b"0000"  # no wants: upload-pack answers nothing and exits

    async def post() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await client.post(
                gateway.url("a.git") + "/git-upload-pack",
                content=body(),
                headers={"content-type": "application/x-git-upload-pack-request"},
            )
        posted.set()

    nursery.start_soon(post)
    seen: list[Snapshot] = []

    def until_listed(document: str) -> bool:
        seen.append(decode(document))
        return not seen[-1].rpcs

    await watch(gateway.server, until_listed)
    finish.set()
    await posted.wait()
    [rpc] = seen[-1].rpcs
    assert rpc.method == "POST /default/a.git/git-upload-pack"
    assert rpc.transport == "http" and rpc.client.startswith("127.0.0.1:")
    listeners = {listener.name: listener for listener in seen[-1].listeners}
    assert listeners["gateway"].connections == 1 and listeners["gateway"].rpcs == 1

"""`trio-gitaly top`, run as a real subprocess against a running server: the JSON
snapshot for scripts, the live view read off a pseudo-terminal, tokens, no server."""

from __future__ import annotations

import fcntl
import json
import os
import struct
import sys
import termios
from collections.abc import Callable
from typing import Any

import msgspec
import pyte
import trio

from tests.helpers import Client, make_config
from tests.limits.held_calls import HeldCall
from tests.repos import rich_repository
from trio_gitaly.config import AuthConfig, Config
from trio_gitaly.nursery_tree import RunningServer, serve

TOKEN = "the shared secret"
COLUMNS, LINES = 80, 24
#: How long a test waits for the screen to show something.
SCREEN_WAIT_S = 30.0


async def top(*args: str, env: dict[str, str] | None = None) -> trio.Process:
    """`trio-gitaly top ARGS`, finished, with its output captured."""
    with trio.fail_after(60):
        return await trio.run_process(
            [sys.executable, "-m", "trio_gitaly", "top", *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, **(env or {})},
        )  # type: ignore[return-value]


def address(running: RunningServer) -> str:
    return f"http://{running.addresses['http'][0]}"


def find(node: dict[str, Any], name: str) -> dict[str, Any]:
    """The first node called `name` in a snapshot's tree, depth first."""
    if node["name"] == name:
        return node
    for child in node["children"]:
        try:
            return find(child, name)
        except KeyError:
            continue
    raise KeyError(name)


async def held_upload_pack(
    config: Config, running: RunningServer, connect: Callable[[str], Client]
) -> HeldCall:
    rich_repository(os.path.join(config.storage[0].path, "a.git"))
    call = HeldCall(connect(running.addresses["tcp"][0]), "a.git")
    await call.wait_admitted()
    return call


async def test_once_json_shows_the_tree_a_running_rpc_and_a_worker(
    config: Config, server: RunningServer, connect: Callable[[str], Client]
) -> None:
    call = await held_upload_pack(config, server, connect)
    result = await top("--address", address(server), "--once", "--json")
    call.release()
    await call.wait_finished()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 1, "one snapshot, one line"
    snapshot = json.loads(lines[0])

    root = snapshot["tree"]
    assert root["name"] == "root" and root["state"] == "serving"
    assert {"listeners", "workers", "http"} <= {child["name"] for child in root["children"]}
    tcp = find(root, "listener tcp")
    (connection,) = tcp["children"]
    (rpc_node,) = connection["children"]
    assert rpc_node["kind"] == "rpc" and rpc_node["name"] == "SSHUploadPack"

    (rpc,) = snapshot["rpcs"]
    assert rpc["method"] == "/gitaly.SSHService/SSHUploadPack"
    assert rpc["repository"] == "default/a.git"
    assert rpc["client"].startswith("127.0.0.1:") and rpc["transport"] == "tcp"
    assert 0 <= snapshot["now"] - rpc["started"] < 60

    workers = {worker["name"]: worker for worker in snapshot["workers"]}
    cleaner = workers["tempdir cleaner"]
    assert cleaner["last_run"] <= snapshot["now"] < cleaner["next_run"]
    assert {"tcp", "unix", "internal", "http"} <= {entry["name"] for entry in snapshot["listeners"]}


async def test_a_missing_server_is_one_line_and_status_1(short_dir: str) -> None:
    # A port nobody listens on: bound and closed again.
    probe = trio.socket.socket()
    await probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    result = await top("--address", f"http://127.0.0.1:{port}", "--once", "--json")
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode() == (
        f"trio-gitaly top: cannot connect to ws://127.0.0.1:{port}/-/events: Connection refused\n"
    )


async def test_the_token_comes_from_a_file_or_the_environment(
    nursery: trio.Nursery, short_dir: str
) -> None:
    running: RunningServer = await nursery.start(
        serve, make_config(short_dir, auth=AuthConfig(token=TOKEN))
    )
    refused = await top("--address", address(running), "--once", "--json")
    assert refused.returncode == 1
    assert refused.stderr.decode().endswith("refused (401): authentication required\n")
    assert b"Traceback" not in refused.stderr

    wrong = await top(
        "--address", address(running), "--once", "--json", env={"TRIO_GITALY_TOKEN": "nope"}
    )
    assert wrong.returncode == 1
    assert "refused (403): permission denied: wrong hmac signature" in wrong.stderr.decode()

    token_file = os.path.join(short_dir, "token")
    with open(token_file, "w", encoding="utf-8") as f:
        f.write(TOKEN + "\n")
    from_file = await top(
        "--address", address(running), "--once", "--json", "--token-file", token_file
    )
    from_env = await top(
        "--address", address(running), "--once", "--json", env={"TRIO_GITALY_TOKEN": TOKEN}
    )
    for result in (from_file, from_env):
        assert result.returncode == 0, result.stderr
        assert msgspec.json.decode(result.stdout)["tree"]["name"] == "root"


async def test_the_live_view_fits_80x24_and_shows_the_tree_and_rpcs(
    config: Config, server: RunningServer, connect: Callable[[str], Client]
) -> None:
    call = await held_upload_pack(config, server, connect)
    screen = pyte.Screen(COLUMNS, LINES)
    terminal = pyte.ByteStream(screen)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(LINES)}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_gitaly", "top", "--address", address(server)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    output = trio.lowlevel.FdStream(master)

    def text() -> list[str]:
        return [line.rstrip() for line in screen.display]

    async def until_shown(*wanted: str) -> list[str]:
        with trio.fail_after(SCREEN_WAIT_S):
            while not all(any(w in line for line in text()) for w in wanted):
                terminal.feed(await output.receive_some(65536))
        return text()

    try:
        lines = await until_shown("listener tcp", "SSHUploadPack", "tempdir cleaner")
        # The header is still the first line: nothing was wider or taller than the screen.
        assert lines[0].startswith("trio-gitaly ") and "serving" in lines[0]
        assert lines[1].startswith("root")
        assert any("listener tcp" in line and "1 conn · 1 rpc" in line for line in lines)
        (rpc_line,) = [line for line in lines if "SSHUploadPack" in line]
        assert "default/a.git" in rpc_line and "127.0.0.1:" in rpc_line
        assert len(lines) == LINES and all(len(line) <= COLUMNS for line in lines)

        # The RPC ends: the next snapshots say so.
        call.release()
        await call.wait_finished()
        await until_shown("no RPC in flight", "0 conn · 0 rpc")

        await output.send_all(b"q")
        with trio.fail_after(10):
            status = await process.wait()
        assert status == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await output.aclose()

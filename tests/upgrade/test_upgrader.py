"""The upgrade node in-process: successors that fail, hang, or take over; the pid file.

The successor here is a small Python program instead of a whole server, so each case
(exit, hang, ignore SIGTERM, become ready) is exact and quick; test_sighup.py runs the
real thing.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import trio

from tests.helpers import Client
from trio_gitaly import upgrade
from trio_gitaly.config import Config, Duration
from trio_gitaly.nursery_tree import RunningServer, serve
from trio_gitaly.pidfile import pid_file_path, remove_pid_file, write_pid_file
from trio_gitaly.rpc.gen.gitaly import server_pb2
from trio_gitaly.upgrade import HANDOVER_ENV, Handover, HandoverError

WAIT_S = 10.0

# Successors: each is `python -c <program>`.
EXITS_3 = "import sys; sys.exit(3)"
HANGS = "import time; time.sleep(60)"
# Creates the file argv[1] once SIGTERM is ignored.
IGNORES_SIGTERM = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").close()
time.sleep(60)
"""
# Reports what it inherited (fd -> address) to the file named by argv[1], then says ready.
TAKES_OVER = """
import json, os, socket, sys, time
handover = json.loads(os.environ["TRIO_GITALY_HANDOVER"])
seen = {}
for kind, address, fds in handover["listeners"]:
    for fd in fds:
        sock = socket.socket(fileno=fd)
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        seen.setdefault(kind, []).append([address, str(sock.getsockname()), listening])
with open(sys.argv[1], "w") as out:
    json.dump(seen, out)
os.write(handover["ready_fd"], b"R")
time.sleep(60)
"""


async def _start(
    nursery: trio.Nursery, config: Config, program: str, *args: str
) -> tuple[RunningServer, Handover]:
    handover = Handover([sys.executable, "-c", program, *args])
    server: RunningServer = await nursery.start(
        functools.partial(serve, config, handle_signals=True, handover=handover)
    )
    return server, handover


async def _logged(caplog: pytest.LogCaptureFixture, msg: str) -> logging.LogRecord:
    with trio.fail_after(WAIT_S):
        while True:
            for record in caplog.records:
                if record.getMessage() == msg:
                    return record
            await trio.sleep(0.01)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = getattr(record, "fields", {})
    return fields


def _reap(pid: int) -> None:
    os.waitpid(pid, 0)


def _gone(pid: int) -> bool:
    # Reaped by the upgrade node: no /proc entry, not even a zombie.
    return not os.path.exists(f"/proc/{pid}")


async def _serves(connect: Callable[..., Client], server: RunningServer) -> bool:
    client = connect(server.addresses["tcp"][0])
    info = await client.unary(
        "/gitaly.ServerService/ServerInfo",
        server_pb2.ServerInfoRequest(),
        server_pb2.ServerInfoResponse,
    )
    return bool(info.server_version)


async def test_a_successor_that_exits_fails_the_upgrade(
    nursery: trio.Nursery,
    config: Config,
    caplog: pytest.LogCaptureFixture,
    connect: Callable[..., Client],
) -> None:
    caplog.set_level(logging.INFO, logger="trio_gitaly.upgrade")
    server, handover = await _start(nursery, config, EXITS_3)
    os.kill(os.getpid(), signal.SIGHUP)
    failed = await _logged(caplog, "Upgrade failed")
    assert _fields(failed)["error"] == "the new process exited with status 3"
    assert _gone(_fields(await _logged(caplog, "starting upgrade"))["new_pid"])
    assert not server.lifecycle.stopping.is_set()
    assert not handover.handed_over
    assert await _serves(connect, server)


async def test_a_successor_not_ready_in_time_is_stopped(
    nursery: trio.Nursery,
    config: Config,
    caplog: pytest.LogCaptureFixture,
    connect: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upgrade, "READY_TIMEOUT_S", 0.5)
    caplog.set_level(logging.INFO, logger="trio_gitaly.upgrade")
    server, _ = await _start(nursery, config, HANGS)
    os.kill(os.getpid(), signal.SIGHUP)
    failed = await _logged(caplog, "Upgrade failed")
    assert _fields(failed)["error"] == "the new process was not ready within 0.5s"
    pid = _fields(await _logged(caplog, "starting upgrade"))["new_pid"]
    with trio.fail_after(WAIT_S):
        while not _gone(pid):
            await trio.sleep(0.01)
    assert await _serves(connect, server)
    # The next SIGHUP is a new attempt, not refused.
    caplog.clear()
    os.kill(os.getpid(), signal.SIGHUP)
    await _logged(caplog, "Upgrade failed")
    assert not [r for r in caplog.records if r.getMessage() == "upgrade refused"]


async def test_stopping_during_an_upgrade_stops_the_successor(
    config: Config, caplog: pytest.LogCaptureFixture, short_dir: str
) -> None:
    # It ignores SIGTERM: killed once the grace period is over.
    grace_s = 0.5
    caplog.set_level(logging.INFO, logger="trio_gitaly.upgrade")
    config = msgspec.structs.replace(config, graceful_restart_timeout=Duration(grace_s))
    ignoring = os.path.join(short_dir, "ignoring")
    with trio.fail_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            server, handover = await _start(nursery, config, IGNORES_SIGTERM, ignoring)
            os.kill(os.getpid(), signal.SIGHUP)
            pid = _fields(await _logged(caplog, "starting upgrade"))["new_pid"]
            while not os.path.exists(ignoring):
                await trio.sleep(0.01)
            server.stop()
            stopped_at = trio.current_time()
    # The tree ended once the successor was gone: killed at the grace deadline.
    assert _gone(pid)
    assert trio.current_time() - stopped_at >= grace_s
    failed = await _logged(caplog, "Upgrade failed")
    assert _fields(failed)["error"] == "stopping: the new process is stopped as well"
    assert not handover.handed_over


async def test_a_ready_successor_inherits_the_listeners_and_we_stop(
    config: Config, caplog: pytest.LogCaptureFixture, short_dir: str
) -> None:
    caplog.set_level(logging.INFO, logger="trio_gitaly.upgrade")
    report = os.path.join(short_dir, "inherited.json")
    with trio.fail_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            server, handover = await _start(nursery, config, TAKES_OVER, report)
            os.kill(os.getpid(), signal.SIGHUP)
            succeeded = await _logged(caplog, "Upgrade succeeded")
    # Handed over: the tree stopped by itself, and left the socket file to the successor.
    pid = _fields(succeeded)["new_pid"]
    try:
        assert handover.handed_over
        assert os.path.exists(config.socket_path)
        with open(report, encoding="utf-8") as f:
            inherited = json.load(f)
        assert sorted(inherited) == ["http", "tcp", "unix"]
        assert inherited["unix"] == [[config.socket_path, config.socket_path, 1]]
        ((address, bound, listening),) = inherited["tcp"]
        assert address == "127.0.0.1:0"
        assert bound == str(("127.0.0.1", int(server.addresses["tcp"][0].rsplit(":")[1])))
        assert listening == 1
    finally:
        # Our child (the test process ran the tree): stop and reap it.
        os.kill(pid, signal.SIGKILL)
        _reap(pid)


async def test_refused_while_not_ready_and_after_handing_over(
    nursery: trio.Nursery, config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_gitaly.upgrade")
    # A predecessor still waits for our "ready": we are no one to upgrade yet.
    read_end, write_end = os.pipe()
    handover = Handover([sys.executable, "-c", EXITS_3], ready_fd=write_end)
    await nursery.start(functools.partial(serve, config, handle_signals=True, handover=handover))
    os.kill(os.getpid(), signal.SIGHUP)
    refused = await _logged(caplog, "upgrade refused")
    assert _fields(refused)["reason"] == "this process is not ready yet"
    handover.signal_ready()
    assert os.read(read_end, 1) == b"R"
    os.close(read_end)


def test_handover_environment_round_trip(short_dir: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = os.path.join(short_dir, "s")
    sock.bind(path)
    sock.listen()
    fd = os.dup(sock.fileno())
    sock.close()
    environ = {HANDOVER_ENV: json.dumps({"ready_fd": 99, "listeners": [["unix", path, [fd]]]})}
    handover = Handover.from_environ(["argv"], environ)
    assert HANDOVER_ENV not in environ, "children of the successor must not see it"
    assert handover.awaiting_ready and not handover.owns_listeners
    assert handover.take("unix", "/elsewhere") is None
    (adopted,) = handover.take("unix", path) or []
    assert adopted.getsockname() == path
    assert not adopted.get_inheritable()
    adopted.close()
    assert Handover.from_environ(["argv"], {}).owns_listeners


@pytest.mark.parametrize(
    "raw", ["not json", "{}", '{"ready_fd": 3, "listeners": [["unix"]]}'], ids=str
)
def test_malformed_handover_environment(raw: str) -> None:
    with pytest.raises(HandoverError):
        Handover.from_environ(["argv"], {HANDOVER_ENV: raw})


def test_pid_file_is_replaced_not_rewritten(short_dir: str) -> None:
    path = os.path.join(short_dir, "pid")
    write_pid_file(path, 123)
    # A reader holding the old file (here: a second link to it) never sees it change.
    os.link(path, os.path.join(short_dir, "held"))
    write_pid_file(path)
    with open(os.path.join(short_dir, "held"), encoding="ascii") as held:
        assert held.read() == "123\n"
    with open(path, encoding="ascii") as current:
        assert current.read() == f"{os.getpid()}\n"
    assert sorted(os.listdir(short_dir)) == ["held", "pid"]


def test_pid_file_is_removed_only_while_it_names_us(short_dir: str) -> None:
    path = os.path.join(short_dir, "pid")
    write_pid_file(path, os.getpid() + 1)
    remove_pid_file(path)
    assert os.path.exists(path)
    write_pid_file(path)
    remove_pid_file(path)
    assert not os.path.exists(path)


def test_pid_file_path_precedence() -> None:
    env = {"GITALY_PID_FILE": "/from/env"}
    assert pid_file_path("/from/flag", "/from/config", env) == "/from/flag"
    assert pid_file_path(None, "/from/config", env) == "/from/env"
    assert pid_file_path(None, "/from/config", {}) == "/from/config"
    assert pid_file_path(None, "", {}) == ""

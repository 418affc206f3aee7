"""The tree as a whole, in-process: start-up, crash handling, the runtime directory."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import msgspec
import pytest
import trio

from tests.helpers import make_config
from trio_gitaly.config import ListenAddress
from trio_gitaly.nursery_tree import RunningServer, StartupError, serve


async def test_runtime_dir_lives_as_long_as_the_tree(short_dir: str) -> None:
    cfg = make_config(short_dir)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = os.path.join(cfg.runtime_dir, f"gitaly-{dead.pid}")
    os.makedirs(os.path.join(stale, "sock.d"))
    async with trio.open_nursery() as nursery:
        running: RunningServer = await nursery.start(serve, cfg)
        ours = running.runtime_dir
        assert ours == os.path.join(cfg.runtime_dir, f"gitaly-{os.getpid()}")
        assert os.stat(ours).st_mode & 0o777 == 0o700
        assert os.path.exists(os.path.join(ours, "sock.d", "intern"))
        assert not os.path.exists(stale), "the dead process' directory was not pruned"
        running.stop()
    assert not os.path.exists(ours)
    assert not os.path.exists(cfg.socket_path), "the unix socket file was left behind"


async def test_crashing_child_takes_the_tree_down_with_a_log_line(
    short_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(short_dir)

    async def crasher(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(0.1)
        raise RuntimeError("disk on fire")

    caplog.set_level(logging.INFO, logger="trio_gitaly")
    with pytest.RaisesGroup(
        pytest.RaisesExc(RuntimeError, match="disk on fire"), flatten_subgroups=True
    ):
        async with trio.open_nursery() as nursery:
            running: RunningServer = await nursery.start(
                lambda task_status: serve(
                    cfg, workers=[("crasher", crasher)], task_status=task_status
                )
            )
            await trio.sleep(5)
            pytest.fail("the tree kept running after a child crashed")
    crashed = [r for r in caplog.records if r.getMessage().startswith("nursery tree node crashed")]
    assert [r.fields["node"] for r in crashed] == ["workers/crasher"]  # type: ignore[attr-defined]
    assert not os.path.exists(running.runtime_dir)


async def test_port_in_use_fails_start_up_clearly(short_dir: str) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    cfg = msgspec.structs.replace(
        make_config(short_dir), listen_addr=ListenAddress("127.0.0.1", port)
    )
    with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}"):
        await serve(cfg)
    for listener in listeners:
        await listener.aclose()
    # Nothing of the failed start is left behind.
    assert os.listdir(cfg.runtime_dir) == []


async def test_missing_git_fails_start_up_clearly(short_dir: str) -> None:
    cfg = make_config(short_dir)
    cfg = msgspec.structs.replace(
        cfg, git=msgspec.structs.replace(cfg.git, bin_path="/nonexistent/git")
    )
    with pytest.raises(StartupError, match="git"):
        await serve(cfg)
    assert os.listdir(cfg.runtime_dir) == []


async def test_start_up_logs_each_step_with_duration(
    short_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_gitaly")
    async with trio.open_nursery() as nursery:
        running: RunningServer = await nursery.start(serve, make_config(short_dir))
        running.stop()
    messages = [r.getMessage() for r in caplog.records]
    steps = [
        "finished creating runtime directory",
        "finished detecting git version",
        "finished initializing storages",
        "Started trio-gitaly",
    ]
    positions = [messages.index(step) for step in steps]
    assert positions == sorted(positions)
    for record in caplog.records:
        if record.getMessage() in steps:
            assert record.fields["duration_ms"] >= 0  # type: ignore[attr-defined]
    assert "listening at address" in messages
    assert messages.index("listening at address") < messages.index("Started trio-gitaly")

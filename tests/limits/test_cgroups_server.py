"""cgroups in the running server: an RPC's git lands in its repository's group, the pruner
worker removes dead servers' groups, and stopping removes ours."""

from __future__ import annotations

import os
from collections.abc import Callable

import msgspec
import trio

from tests.helpers import Client
from tests.limits.cgroup_support import MOUNTPOINT, cgroup_config, cgroups_of, group_for
from tests.limits.held_calls import HeldCall
from tests.repos import rich_repository
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer, serve

# A pid above any pid_max, so certainly not a running process.
DEAD_PID = 2**22 + 1


def upload_pack_of(repo_path: str) -> int:
    """The pid of the `git upload-pack` serving `repo_path` (exactly one must run)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"upload-pack" in argv and repo_path.encode() in argv:
            found.append(int(pid))
    assert len(found) == 1, found
    return found[0]


async def test_rpc_git_lands_in_its_group_and_stopping_removes_the_tree(
    v1_root: str, config: Config, connect: Callable[..., Client]
) -> None:
    stale = [f"{MOUNTPOINT}/{c}/{v1_root}/gitaly-{DEAD_PID}" for c in ("memory", "cpu")]
    for path in stale:
        os.makedirs(path)
    cfg = msgspec.structs.replace(config, cgroups=cgroup_config(v1_root, memory_bytes=2**30))
    repo = os.path.join(cfg.storage[0].path, "group", "a.git")
    rich_repository(repo)
    parent = f"/{v1_root}/gitaly-{os.getpid()}"
    async with trio.open_nursery() as nursery:
        running: RunningServer = await nursery.start(serve, cfg)
        with trio.fail_after(10):  # the pruner runs in the background after start-up
            while any(os.path.exists(path) for path in stale):
                await trio.sleep(0.01)
        call = HeldCall(connect(running.addresses["tcp"][0]), "group/a.git")
        await call.wait_admitted()
        placed = cgroups_of(upload_pack_of(repo))
        expected = f"{parent}/{group_for('default/group/a.git')}"
        assert placed["memory"] == expected and placed["cpu"] == expected
        call.release()
        await call.wait_finished()
        assert call.error is None
        assert os.path.isdir(f"{MOUNTPOINT}/memory{parent}")
        running.stop()
    for controller in ("memory", "cpu"):
        # Ours is gone with the server; no group of any server is left.
        root = f"{MOUNTPOINT}/{controller}/{v1_root}"
        assert [entry.name for entry in os.scandir(root) if entry.is_dir()] == []

"""A push in flight when the server starts draining completes: its later hooks call back
over the internal socket, which stops accepting only after the other listeners drained."""

from __future__ import annotations

import functools
import os
import stat

import trio

from tests.clients.test_ssh_push import commit, rev
from tests.helpers import storage_path
from tests.repos import git, rich_repository
from tests.transport_helpers import client_env, refs, run_git, ssh_url, unix_address
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer

# Long enough for the test to start the drain while pre-receive still runs.
PRE_RECEIVE_S = 1.5


def install_hook(repo: str, name: str, script: str) -> None:
    hooks = os.path.join(repo, "custom_hooks")
    os.makedirs(hooks, exist_ok=True)
    path = os.path.join(hooks, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + script)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


async def test_a_push_in_flight_at_stop_runs_its_later_hooks_and_lands(
    server: RunningServer, config: Config, tmp_path: object
) -> None:
    origin = os.path.join(storage_path(config), "origin.git")
    rich_repository(origin)
    marker = os.path.join(str(tmp_path), "update-ran")
    install_hook(origin, "pre-receive", f"sleep {PRE_RECEIVE_S}\n")
    # The update hook starts after the drain began: a new call on the internal socket.
    install_hook(origin, "update", f"touch {marker}\n")
    clone = os.path.join(str(tmp_path), "clone.git")
    git(origin, "clone", "--quiet", "--bare", "--no-local", origin, clone)
    git(clone, "remote", "set-url", "origin", ssh_url("origin.git"))
    commit(clone, "refs/heads/topic", rev(clone, "main"), b"topic.txt")
    env = client_env(unix_address(config))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            functools.partial(run_git, "-C", clone, "push", "origin", "topic", env=env)
        )
        await trio.sleep(PRE_RECEIVE_S / 3)
        server.stop()
    assert os.path.exists(marker)
    assert refs(origin, "refs/heads/topic") == f"{rev(clone, 'topic')} refs/heads/topic\n"

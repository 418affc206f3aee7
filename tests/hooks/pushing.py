"""Pushing with plain git into the test server's storage, with the hooks a transport sets up.

No SSH or HTTP transport: git pushes to the repository's path with
`--receive-pack='git -c core.hooksPath=<runtime>/hooks receive-pack'` and the payload
`HookSetup.git_options` makes, which is what the transports give receive-pack. Every
hook then runs the entry point, which calls HookService over the internal socket.
"""

from __future__ import annotations

import os
import shlex
import subprocess

import trio
from google.protobuf import json_format

from tests.hooks.helpers import USER
from tests.repos import GIT_ENV
from trio_gitaly.hooks.install import HOOKS_DIR, HookSetup
from trio_gitaly.hooks.payload import RECEIVE_PACK_HOOKS
from trio_gitaly.nursery_tree import RunningServer
from trio_gitaly.rpc.gen.gitaly import shared_pb2


def make_source(directory: str) -> str:
    """A work tree with two commits on main, to push from."""
    path = os.path.join(directory, "src")
    for args in (
        ["init", "-q", "-b", "main", path],
        ["-C", path, "commit", "-q", "--allow-empty", "-m", "one"],
        ["-C", path, "commit", "-q", "--allow-empty", "-m", "two"],
    ):
        subprocess.run(["git", *args], env=GIT_ENV, check=True)
    return path


async def push(
    server: RunningServer,
    repo: shared_pb2.Repository,
    source: str,
    target: str,
    refspec: str,
    *options: str,
    token: str = "",
) -> subprocess.CompletedProcess[bytes]:
    """`git push [options] <target> <refspec>` from `source`, hooks set up as for a transport."""
    setup = HookSetup(
        hooks_dir=os.path.join(server.runtime_dir, HOOKS_DIR),
        runtime_dir=server.runtime_dir,
        internal_socket=server.addresses["internal"][0],
        token=token,
    )
    config, env = setup.git_options(
        repository_json=json_format.MessageToJson(repo, indent=None),
        object_format="sha1",
        requested=RECEIVE_PACK_HOOKS,
        user=USER,
    )
    settings = [*config, ("receive.advertisePushOptions", "true")]
    receive_pack = ["git"]
    for key, value in settings:
        receive_pack += ["-c", f"{key}={value}"]
    receive_pack.append("receive-pack")
    command = ["git", "-C", source, "push", f"--receive-pack={shlex.join(receive_pack)}"]
    return await trio.run_process(
        [*command, *options, target, refspec],
        env={**GIT_ENV, **env},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


def snapshot(path: str) -> dict[str, tuple[int, bytes]]:
    """Every entry under `path`: its mode, and its content or link target."""
    entries: dict[str, tuple[int, bytes]] = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            mode = os.lstat(full).st_mode
            if os.path.islink(full):
                content = os.readlink(full).encode()
            elif os.path.isfile(full):
                with open(full, "rb") as f:
                    content = f.read()
            else:
                content = b""
            entries[os.path.relpath(full, path)] = (mode, content)
    return entries


def head(path: str) -> str:
    """The commit `main` points at."""
    result = subprocess.run(
        ["git", "-C", path, "rev-parse", "main"], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()

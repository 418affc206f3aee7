"""Helpers for the gateway's end-to-end tests: a server with the gateway, the git client.

Everything is real: the server tree with hypercorn on an ephemeral port, repositories in
its storage, and the machine's git as the client (git-remote-http, libcurl).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import trio

from tests.helpers import make_config, storage_path
from tests.repos import GIT_ENV
from trio_gitaly.config import Config, GatewayBasicAuth, GatewayConfig, ListenAddress
from trio_gitaly.nursery_tree import RunningServer, serve

# The client must never prompt (a 401 would wait for a password on the terminal).
CLIENT_ENV = {**GIT_ENV, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}


@dataclass
class Gateway:
    """A running server with the gateway, and where its repositories live."""

    server: RunningServer
    config: Config

    @property
    def address(self) -> str:
        return self.server.addresses["gateway"][0]

    @property
    def storage(self) -> str:
        return storage_path(self.config)

    def url(self, relative_path: str, *, userinfo: str = "") -> str:
        """The clone URL of a repository of the default storage."""
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}{self.address}/default/{relative_path}"

    def repo(self, relative_path: str) -> str:
        return os.path.join(self.storage, relative_path)


async def start_gateway(
    nursery: trio.Nursery, base: str, auth: GatewayBasicAuth | None = None, **overrides: Any
) -> Gateway:
    """Start a server whose gateway listens on an ephemeral port of 127.0.0.1.

    `overrides` replace fields of the test config (`make_config`).
    """
    gateway = GatewayConfig(
        listen_addr=ListenAddress.parse("127.0.0.1:0"), basic_auth=auth or GatewayBasicAuth()
    )
    config = make_config(base, gateway=gateway, **overrides)
    server: RunningServer = await nursery.start(serve, config)
    return Gateway(server, config)


async def git(
    *args: str, cwd: str | None = None, env: Mapping[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run the git client; raises with its stderr when `check` and it fails."""
    result = await trio.run_process(
        ["git", *args],
        cwd=cwd,
        env={**CLIENT_ENV, **(env or {})},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {result.returncode}\n{result.stderr.decode()}")
    return result


async def refs(path: str, *patterns: str) -> dict[str, str]:
    """refname → object id of `git for-each-ref` in repository `path`."""
    out = await git("-C", path, "for-each-ref", "--format=%(refname) %(objectname)", *patterns)
    return dict(line.split(" ") for line in out.stdout.decode().splitlines())


async def fsck(path: str) -> None:
    """`git fsck` must be clean (it exits non-zero for any error)."""
    await git("-C", path, "fsck", "--no-progress")


async def assert_clone_matches(server_repo: str, clone: str) -> None:
    """The clone has every branch and tag of the server, and both pass fsck."""
    theirs = await refs(server_repo, "refs/heads", "refs/tags")
    remotes = await refs(clone, "refs/remotes/origin")
    ours = {
        "refs/heads/" + name.removeprefix("refs/remotes/origin/"): oid
        for name, oid in remotes.items()
        if name != "refs/remotes/origin/HEAD"
    }
    ours |= await refs(clone, "refs/tags")
    assert ours == theirs
    await fsck(server_repo)
    await fsck(clone)


def processes_of(repo_path: str) -> list[str]:
    """Processes whose command line names `repo_path` or that run inside it."""
    found = []
    needle = repo_path.encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if needle in cmdline or cwd == repo_path or cwd.startswith(repo_path + "/"):
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def kill_group(process: trio.Process) -> None:
    """SIGKILL the client and everything it started (git-remote-http, index-pack)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)

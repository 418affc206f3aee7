"""Helpers for the transport tests: plain git talking to the test server.

git reaches the server through `trio-gitaly ssh` (GIT_SSH_COMMAND), run as a real
subprocess as git would run it. git runs with trio's process API, so the server of the
same test keeps serving meanwhile.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping

import trio

from tests.repos import GIT_ENV, git
from trio_gitaly.config import Config

#: How long a clone or push of a test may take before the test fails.
GIT_TIMEOUT_S = 60.0
#: Markers of the processes a transport RPC runs (as they appear in /proc cmdlines).
TRANSPORT_COMMANDS = (
    "upload-pack",
    "receive-pack",
    "upload-archive",
    "pack-objects",
    "index-pack",
    "unpack-objects",
    "trio_gitaly.hooks",
)


def ssh_command(address: str, *options: str) -> str:
    """GIT_SSH_COMMAND running `trio-gitaly ssh` with this interpreter."""
    return shlex.join([sys.executable, "-m", "trio_gitaly", "ssh", "--address", address, *options])


def unix_address(config: Config) -> str:
    """The test server's unix socket as a `trio-gitaly ssh --address`."""
    return f"unix://{config.socket_path}"


def client_env(address: str, *options: str, **extra: str) -> dict[str, str]:
    """The environment of a git client reaching `address` through `trio-gitaly ssh`."""
    return {
        **GIT_ENV,
        "GIT_SSH_COMMAND": ssh_command(address, *options),
        "GIT_TERMINAL_PROMPT": "0",
        **extra,
    }


def ssh_url(relative_path: str, storage: str = "default") -> str:
    """The URL of a repository of the test server; the host is ignored."""
    return f"ssh://trio-gitaly/{storage}/{relative_path}"


async def run_git(
    *args: str,
    env: Mapping[str, str],
    cwd: str | None = None,
    check: bool = True,
    stdin: bytes = b"",
) -> subprocess.CompletedProcess[bytes]:
    """Run the git client; with `check`, fail the test (showing stderr) unless it exits 0."""
    with trio.fail_after(GIT_TIMEOUT_S):
        result = await trio.run_process(
            ["git", *args],
            env=dict(env),
            cwd=cwd,
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    if check and result.returncode != 0:
        raise AssertionError(
            f"git {shlex.join(args)} exited {result.returncode}:\n"
            + result.stderr.decode(errors="replace")
        )
    return result


def refs(path: str, *patterns: str) -> str:
    """The refs of repository `path` (all, or those matching `patterns`) and their targets."""
    return git(path, "for-each-ref", "--format=%(objectname) %(refname)", *patterns).decode()


def fsck(path: str) -> None:
    """Fail unless `git fsck` finds repository `path` clean."""
    git(path, "fsck", "--strict", "--no-progress", "--no-dangling")


def transport_processes(repo_path: str) -> list[str]:
    """Command lines of live transport processes working on `repo_path` (Linux /proc).

    A process counts when its command names a transport command and either its command
    line holds the path or its working directory is the repository (pack-objects and
    the hooks run there without naming it).
    """
    real = os.path.realpath(repo_path)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except OSError:  # gone meanwhile
            continue
        if zombie or not any(name in cmdline for name in TRANSPORT_COMMANDS):
            continue
        if repo_path in cmdline or real in cmdline or cwd == real:
            found.append(cmdline)
    return found


def quarantine_dirs(repo_path: str) -> list[str]:
    """receive-pack's quarantine directories present in `repo_path`'s object directory."""
    objects = os.path.join(repo_path, "objects")
    return sorted(name for name in os.listdir(objects) if "incoming-" in name)


async def wait_for(
    condition: Callable[[], object], timeout_s: float, interval_s: float = 0.01
) -> bool:
    """Poll `condition()` until true or `timeout_s` passes; return whether it came true."""
    with trio.move_on_after(timeout_s):
        while not condition():
            await trio.sleep(interval_s)
        return True
    return bool(condition())

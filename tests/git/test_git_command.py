"""CommandFactory against the machine's git: environment, run, spawn and cancellation.

Every process here is real. Process-group checks read /proc (Linux only): a member that
was SIGKILLed but whose new parent (PID 1) has not reaped it yet shows up as a zombie,
which is dead; what must never exist after a scope ends is a *live* member.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from typing import TYPE_CHECKING

import pytest
import trio

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.args import GLOBAL_CONFIG
from trio_gitaly.git.command import (
    STDERR_TAIL_BYTES,
    CommandFactory,
    GitCommand,
    GitCommandError,
)
from trio_gitaly.git.process import FIXED_ENVIRONMENT, INHERITED_ENVIRONMENT
from trio_gitaly.git.version import GitBinary, GitVersion, detect

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")

IDENT = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


@pytest.fixture
async def factory() -> CommandFactory:
    return CommandFactory(await detect())


async def _init(factory: CommandFactory, path: Path) -> str:
    await factory.run(
        GitCommand("init", flags=["--bare", "--quiet"], args=[str(path)]), repo_path=None
    )
    return str(path)


@pytest.fixture
async def repo(factory: CommandFactory, tmp_path: Path) -> str:
    return await _init(factory, tmp_path / "repo.git")


def _live_group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, cmdline) of every non-zombie process whose process group is `pgid`."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # exited while we looked
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            members.append((int(entry), cmdline))
    return members


def _environ_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        items = f.read().split(b"\0")
    return dict(item.decode().split("=", 1) for item in items if item)


async def _wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    # Polling: /proc offers nothing to wait on.
    with trio.fail_after(timeout_s):
        while True:
            if predicate():
                return
            await trio.sleep(0.01)


def _assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# --- environment -------------------------------------------------------------------


async def test_no_global_system_or_inherited_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".gitconfig").write_text("[marker]\n\thome = yes\n")
    (home / ".config" / "git" / "config").write_text("[marker]\n\txdg = yes\n")
    (tmp_path / "global").write_text("[marker]\n\tglobal = yes\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "global"))
    monkeypatch.setenv("GIT_CONFIG_SYSTEM", str(tmp_path / "global"))
    # How a parent process injects config into git without any file:
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'marker.parameters'='yes'")
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "marker.count")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "yes")
    factory = CommandFactory(await detect())  # reads our environment now
    repo = await _init(factory, tmp_path / "repo.git")

    result = await factory.run(
        GitCommand("config", flags=["--list", "--show-origin"]),
        repo_path=repo,
        config=[("trio.caller", "1")],
    )

    lines = result.stdout.decode().splitlines()
    assert not [line for line in lines if "marker." in line]
    from_command_line = [
        line.split("\t", 1)[1] for line in lines if line.startswith("command line:")
    ]
    # git prints keys lower-cased; the order is the argv order.
    assert from_command_line == [f"{k.lower()}={v}" for k, v in GLOBAL_CONFIG] + ["trio.caller=1"]
    assert all(line.startswith(("command line:", f"file:{repo}/config")) for line in lines)


async def test_process_environment_is_exactly_the_allowlist(
    repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("GIT_DIR", "/elsewhere")
    monkeypatch.setenv("TRIO_GITALY_SECRET", "token")
    factory = CommandFactory(await detect())
    extra = {"GIT_OBJECT_DIRECTORY": f"{repo}/objects"}
    async with factory.spawn(
        GitCommand("cat-file", flags=["--batch"]),
        repo_path=repo,
        env=extra,
        stdin=subprocess.PIPE,
    ) as git:
        assert git.stdin is not None
        assert git.stdout is not None
        # One answered request proves git is past exec (the kernel fills in a new
        # program's /proc/<pid>/environ only after our side of the spawn returned); then
        # cat-file waits for the next line, so the process is there to inspect.
        await git.stdin.send_all(b"HEAD\n")
        assert await git.stdout.receive_some(1024) == b"HEAD missing\n"
        environ = _environ_of(git.pid)
    assert set(environ) <= set(FIXED_ENVIRONMENT) | INHERITED_ENVIRONMENT | set(extra)
    assert {k: environ[k] for k in FIXED_ENVIRONMENT} == dict(FIXED_ENVIRONMENT)
    assert environ["TZ"] == "UTC"
    assert environ["PATH"] == os.environ["PATH"]
    assert environ["GIT_OBJECT_DIRECTORY"] == f"{repo}/objects"


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"GIT_CONFIG_GLOBAL": "/home/x/.gitconfig"}, id="override-fixed"),
        pytest.param({"BAD=NAME": "x"}, id="bad-name"),
        pytest.param({"GIT_OBJECT_DIRECTORY": "a\0b"}, id="nul-value"),
    ],
)
async def test_invalid_extra_environment_is_refused(
    factory: CommandFactory, env: dict[str, str]
) -> None:
    with pytest.raises(GitalyError) as info:
        await factory.run(GitCommand("version"), repo_path=None, env=env)
    assert info.value.code == StatusCode.INVALID_ARGUMENT


async def test_invalid_input_spawns_nothing(tmp_path: Path) -> None:
    # A "git" that leaves a mark whenever it is run.
    marker = tmp_path / "ran"
    fake = tmp_path / "git"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\n")
    fake.chmod(0o755)
    factory = CommandFactory(GitBinary(str(fake), GitVersion(2, 39, 5)))
    version = GitCommand("version")
    attempts = [
        factory.run(version, repo_path=None, config=[("bad key", "1")]),
        factory.run(version, repo_path="/r\0"),
        factory.run(version, repo_path=None, env={"GIT_CONFIG_SYSTEM": "/etc/gitconfig"}),
        factory.run(version, repo_path=None, cwd="/tmp\0"),
    ]
    for attempt in attempts:
        with pytest.raises(GitalyError) as info:
            await attempt
        assert info.value.code == StatusCode.INVALID_ARGUMENT
    assert not marker.exists()
    await factory.run(version, repo_path=None)  # the control: a valid call does run it
    assert marker.exists()


# --- run -----------------------------------------------------------------------------


async def test_run_feeds_stdin_and_collects_stdout(factory: CommandFactory, repo: str) -> None:
    data = os.urandom(300 * 1024)  # bigger than a pipe buffer, both ways
    result = await factory.run(
        GitCommand("hash-object", flags=["-w", "--stdin"]), repo_path=repo, stdin=data
    )
    expected = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert result == type(result)(0, f"{expected}\n".encode(), b"")

    shown = await factory.run(GitCommand("cat-file", flags=["-p"], args=[expected]), repo_path=repo)
    assert shown.stdout == data


async def test_run_reports_failure_with_stderr(factory: CommandFactory, repo: str) -> None:
    cmd = GitCommand("rev-parse", flags=["--verify"], args=["refs/heads/nope"])
    result = await factory.run(cmd, repo_path=repo, check=False)
    assert result.returncode == 128
    assert result.stdout == b""
    assert result.stderr == b"fatal: Needed a single revision\n"

    with pytest.raises(GitCommandError) as info:
        await factory.run(cmd, repo_path=repo)
    assert info.value.code == StatusCode.INTERNAL
    assert info.value.message == "git rev-parse: exit status 128: fatal: Needed a single revision"
    assert info.value.returncode == 128
    assert info.value.metadata["argv"][-1] == "refs/heads/nope"


async def test_run_missing_working_directory_is_internal(factory: CommandFactory) -> None:
    with pytest.raises(GitalyError) as info:
        await factory.run(GitCommand("version"), repo_path=None, cwd="/nonexistent/dir")
    assert info.value.code == StatusCode.INTERNAL
    assert info.value.message.startswith("cannot start git version")


async def test_stderr_keeps_only_the_tail(factory: CommandFactory) -> None:
    # GIT_TRACE=2 makes git echo its argv to stderr: ~180 KiB here, beyond the bound.
    args = ["a" * 60_000, "b" * 60_000, "c" * 60_000]
    result = await factory.run(
        GitCommand("rev-parse", flags=["--sq-quote"], args=args),
        repo_path=None,
        env={"GIT_TRACE": "2"},
    )
    assert len(result.stdout) > 180_000
    assert len(result.stderr) == STDERR_TAIL_BYTES
    assert result.stderr == (" ".join(args) + "\n").encode()[-STDERR_TAIL_BYTES:]


# --- spawn ---------------------------------------------------------------------------


async def test_spawn_streams_both_ways(factory: CommandFactory, repo: str) -> None:
    blob = await factory.run(
        GitCommand("hash-object", flags=["-w", "--stdin"]), repo_path=repo, stdin=b"hello\n"
    )
    oid = blob.stdout.strip()
    async with factory.spawn(
        GitCommand("cat-file", flags=["--batch"]), repo_path=repo, stdin=subprocess.PIPE
    ) as git:
        assert git.stdin is not None
        assert git.stdout is not None
        await git.stdin.send_all(oid + b"\n")
        reply = b""
        while not reply.endswith(b"hello\n\n"):
            reply += await git.stdout.receive_some(64 * 1024)
        assert reply == oid + b" blob 6\nhello\n\n"
        await git.stdin.aclose()
        assert await git.wait() == 0
    assert git.stderr_tail() == b""


async def test_leaving_the_block_kills_git(factory: CommandFactory, repo: str) -> None:
    async with factory.spawn(
        GitCommand("cat-file", flags=["--batch"]), repo_path=repo, stdin=subprocess.PIPE
    ) as git:
        pid = git.pid
        assert _live_group_members(pid)
    _assert_gone(pid)


async def test_exception_in_the_block_kills_git_and_propagates_unwrapped(
    factory: CommandFactory, repo: str
) -> None:
    pids = []

    async def fail_while_git_runs() -> None:
        async with factory.spawn(
            GitCommand("cat-file", flags=["--batch"]), repo_path=repo, stdin=subprocess.PIPE
        ) as git:
            pids.append(git.pid)
            raise KeyError("boom")

    # Not an ExceptionGroup: spawn's own nursery must not show through.
    with pytest.raises(KeyError, match="boom"):
        await fail_while_git_runs()
    _assert_gone(pids[0])


async def test_cancelled_scope_kills_blocked_git(factory: CommandFactory, repo: str) -> None:
    start = trio.current_time()
    with trio.move_on_after(0.5) as scope:
        async with factory.spawn(
            GitCommand("cat-file", flags=["--batch"]), repo_path=repo, stdin=subprocess.PIPE
        ) as git:
            pid = git.pid
            await git.wait()  # cat-file reads stdin, which we never close
    assert scope.cancelled_caught
    assert trio.current_time() - start < 1.5
    _assert_gone(pid)


async def _commit_with_big_blob(factory: CommandFactory, repo: str) -> str:
    async def git(cmd: GitCommand, stdin: bytes | None = None) -> str:
        result = await factory.run(cmd, repo_path=repo, stdin=stdin, env=IDENT)
        return result.stdout.decode().strip()

    # Random bytes do not compress: the pack stays ~1 MiB, far beyond the pipe buffers.
    blob = await git(GitCommand("hash-object", flags=["-w", "--stdin"]), os.urandom(1 << 20))
    tree = await git(GitCommand("mktree"), f"100644 blob {blob}\tbig\n".encode())
    commit = await git(GitCommand("commit-tree", flags=["-mbig"], args=[tree]))
    await git(GitCommand("update-ref", args=["refs/heads/main", commit]))
    return commit


def _pkt(line: str) -> bytes:
    return b"%04x" % (len(line) + 4) + line.encode()


async def test_cancellation_kills_the_whole_group(factory: CommandFactory, repo: str) -> None:
    # The case the group exists for: upload-pack runs pack-objects, which blocks writing
    # a pack nobody reads. Killing only upload-pack would leave pack-objects running.
    commit = await _commit_with_big_blob(factory, repo)
    with trio.CancelScope() as scope:
        async with factory.spawn(
            GitCommand("upload-pack", args=[repo]), repo_path=None, stdin=subprocess.PIPE
        ) as git:
            assert git.stdin is not None
            await git.stdin.send_all(_pkt(f"want {commit}\n") + b"0000" + _pkt("done\n"))
            await _wait_until(lambda: len(_live_group_members(git.pid)) >= 2)
            members = _live_group_members(git.pid)
            assert any("pack-objects" in cmdline for _, cmdline in members)
            scope.cancel()
            await trio.sleep_forever()
    _assert_gone(git.pid)
    # SIGKILL reached every member before spawn returned; the leader is reaped, the rest
    # die as soon as the kernel schedules them.
    await _wait_until(lambda: _live_group_members(git.pid) == [], timeout_s=1)


async def test_cancelled_run_kills_transport_child(
    factory: CommandFactory, repo: str, tmp_path: Path
) -> None:
    # `git fetch` over ssh runs the configured ssh command as its child; ours reports its
    # pid and hangs like an unresponsive server.
    pid_file = tmp_path / "ssh.pid"
    fake_ssh = tmp_path / "fake-ssh"
    fake_ssh.write_text(
        f"#!/bin/sh\necho $$ > {pid_file}.tmp\nmv {pid_file}.tmp {pid_file}\nexec sleep 30\n"
    )
    fake_ssh.chmod(0o755)

    async def fetch() -> None:
        await factory.run(
            GitCommand("fetch", args=["ssh://git.invalid/repo.git"]),
            repo_path=repo,
            config=[("core.sshCommand", str(fake_ssh))],
        )

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch)
            await _wait_until(pid_file.exists)
            ssh_pid = int(pid_file.read_text())
            pgid = os.getpgid(ssh_pid)
            assert pgid != os.getpgid(0)  # git runs in a group of its own
            assert ssh_pid in [pid for pid, _ in _live_group_members(pgid)]
            nursery.cancel_scope.cancel()
    await _wait_until(lambda: _live_group_members(pgid) == [], timeout_s=1)

"""The one way the server runs git: `CommandFactory.run` and `CommandFactory.spawn`.

Every git process gets the fixed environment (`process.base_environment`), the global `-c`
options and a validated argv (`args.build_argv`), starts in its own process group, and
lives inside the caller's cancel scope: when the scope ends, for whatever reason, the
whole group is killed with SIGKILL and git is reaped. No git, and none of its children,
outlives the code that started it.
"""

from __future__ import annotations

import subprocess
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import trio

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.args import GitCommand, build_argv
from trio_gitaly.git.process import (
    READ_CHUNK_BYTES as READ_CHUNK_BYTES,
)
from trio_gitaly.git.process import (
    REAP_TIMEOUT_S as REAP_TIMEOUT_S,
)
from trio_gitaly.git.process import (
    STDERR_TAIL_BYTES as STDERR_TAIL_BYTES,
)
from trio_gitaly.git.process import (
    GitProcess as GitProcess,
)
from trio_gitaly.git.process import (
    StderrSink as StderrSink,
)
from trio_gitaly.git.process import (
    base_environment,
    feed_all,
    with_extra_environment,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from trio_gitaly.git.version import GitBinary

__all__ = [
    "READ_CHUNK_BYTES",
    "REAP_TIMEOUT_S",
    "STDERR_TAIL_BYTES",
    "CommandFactory",
    "GitCommand",
    "GitCommandError",
    "GitProcess",
    "GitResult",
    "Placer",
]

# The stderr line in a GitCommandError message: a line, not a dump.
_MAX_ERROR_LINE_CHARS: Final = 300


@dataclass(frozen=True)
class GitResult:
    """What a finished git command produced.

    Attributes:
        returncode: exit status; negative for a signal (-9 is SIGKILL).
        stdout: everything git wrote to stdout.
        stderr: the last `STDERR_TAIL_BYTES` of stderr.
    """

    returncode: int
    stdout: bytes
    stderr: bytes


class GitCommandError(GitalyError):
    """A git command exited non-zero: INTERNAL, with the first line of its stderr.

    Attributes:
        command: the subcommand name.
        returncode: git's exit status.
        stderr: the stderr tail.
    """

    def __init__(self, command: str, returncode: int, stderr: bytes, argv: Sequence[str]) -> None:
        if returncode < 0:
            status = f"killed by signal {-returncode}"
        else:
            status = f"exit status {returncode}"
        line = _first_line(stderr)
        message = f"git {command}: {status}" + (f": {line}" if line else "")
        super().__init__(
            StatusCode.INTERNAL,
            message,
            metadata={"argv": list(argv), "returncode": returncode, "stderr": stderr},
        )
        self.command = command
        self.returncode = returncode
        self.stderr = stderr


class Placer(Protocol):
    """Puts a just-started git process somewhere (the cgroups manager does).

    Called on the Trio thread right after each spawn, before any checkpoint: it must be
    quick and synchronous, and must not raise.
    """

    def place(self, pid: int, *, repo_path: str | None, argv: Sequence[str]) -> str | None:
        """Place process `pid`, started with `argv` for `repo_path`; say where, if anywhere."""
        ...


class CommandFactory:
    """Builds and runs git commands with one binary, environment and global config.

    The environment is taken from ours once, at construction (Gitaly reads it at startup).
    With a `placer`, every process it starts is handed to `placer.place` at once.
    """

    def __init__(self, binary: GitBinary, *, placer: Placer | None = None) -> None:
        self.binary = binary
        self._environment = base_environment()
        self._placer = placer

    def argv(
        self,
        cmd: GitCommand,
        *,
        repo_path: str | None,
        config: Sequence[tuple[str, str]] = (),
    ) -> list[str]:
        """The full argv `run`/`spawn` would execute.

        Raises:
            GitalyError: INVALID_ARGUMENT for bad caller config or a NUL in `repo_path`.
        """
        return build_argv(self.binary.path, cmd, repo_path=repo_path, config=config)

    async def run(
        self,
        cmd: GitCommand,
        *,
        repo_path: str | None,
        config: Sequence[tuple[str, str]] = (),
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        check: bool = True,
        cwd: str | None = None,
    ) -> GitResult:
        """Run `cmd` to completion, feeding it `stdin` and collecting its output.

        Args:
            cmd: the command.
            repo_path: the repository (`--git-dir`); None for commands that take none.
            config: `-c` options after the global defaults.
            env: extra environment variables for this command.
            stdin: bytes written to git's stdin, then closed; None gives it /dev/null.
            check: raise `GitCommandError` on a non-zero exit.
            cwd: working directory of the process.

        Returns:
            The exit status, all of stdout and the stderr tail. stdout is held in memory:
            stream big outputs with `spawn`.

        Raises:
            GitalyError: INVALID_ARGUMENT for invalid input (nothing is spawned),
                INTERNAL when git cannot be started.
            GitCommandError: git exited non-zero and `check` is true.

        Cancellation:
            git's process group is SIGKILLed and reaped before `Cancelled` propagates;
            the output is discarded.
        """
        async with self.spawn(
            cmd,
            repo_path=repo_path,
            config=config,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else None,
            stdout=subprocess.PIPE,
            cwd=cwd,
        ) as process:
            chunks: list[bytes | bytearray] = []
            async with trio.open_nursery() as nursery:
                if stdin is not None:
                    assert process.stdin is not None
                    nursery.start_soon(feed_all, process.stdin, stdin)
                assert process.stdout is not None
                nursery.start_soon(_collect, process.stdout, chunks)
                # Waiting here, not after stdout's EOF, kills stragglers first: one that
                # held stdout open would otherwise keep us waiting for EOF forever.
                returncode = await process.wait()
            result = GitResult(returncode, b"".join(chunks), process.stderr_tail())
        # Raised outside `spawn` so that it reaches the caller as itself.
        if check and returncode != 0:
            raise GitCommandError(cmd.name, returncode, result.stderr, process.argv)
        return result

    async def start(
        self,
        cmd: GitCommand,
        *,
        repo_path: str | None,
        config: Sequence[tuple[str, str]] = (),
        env: Mapping[str, str] | None = None,
    ) -> GitProcess:
        """Start a long-lived `cmd` that outlives the calling task (cat-file caches).

        Unlike `spawn`, nothing is tied to the caller's scope: the caller owns the
        process and must end it with `GitProcess.aclose`. stdin and stdout are pipes;
        stderr goes to /dev/null, since no task would be there to drain a pipe and a
        chatty git would block on a full one.

        Args:
            cmd, repo_path, config, env: as for `run`.

        Returns:
            The running process, in its own process group.

        Raises:
            GitalyError: INVALID_ARGUMENT for invalid input (nothing is spawned),
                INTERNAL when git cannot be started.

        Cancellation:
            Cancelled before the process exists, or not at all: no git is leaked.
        """
        argv = self.argv(cmd, repo_path=repo_path, config=config)
        environment = with_extra_environment(self._environment, env or {})
        try:
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=environment,
                start_new_session=True,
            )
        except OSError as exc:
            raise internal(f"cannot start git {cmd.name}: {exc.strerror}", argv=argv) from exc
        if self._placer is not None:
            self._placer.place(process.pid, repo_path=repo_path, argv=argv)
        return GitProcess(process, argv)

    @asynccontextmanager
    async def spawn(
        self,
        cmd: GitCommand,
        *,
        repo_path: str | None,
        config: Sequence[tuple[str, str]] = (),
        env: Mapping[str, str] | None = None,
        stdin: int | None = None,
        stdout: int | None = subprocess.PIPE,
        cwd: str | None = None,
        on_stderr: StderrSink | None = None,
        terminate_grace_s: float = 0.0,
    ) -> AsyncIterator[GitProcess]:
        """Start `cmd` and hand out the running process for streaming.

        Args:
            cmd, repo_path, config, env, cwd: as for `run`.
            stdin: `subprocess.PIPE` for a `GitProcess.stdin` stream, an open file
                descriptor, or None (or `subprocess.DEVNULL`) for /dev/null. git never
                inherits the server's own stdin.
            stdout: `subprocess.PIPE` (default) for a `GitProcess.stdout` stream, an open
                file descriptor, or None (or `subprocess.DEVNULL`) for /dev/null.
            on_stderr: awaited with each chunk git writes to stderr, as it comes (for
                progress a client should see); a slow sink slows git's stderr down.
            terminate_grace_s: when leaving the block finds git running, close its stdin
                and wait this long before the SIGKILL, for commands that must clean up.

        Yields:
            The process. Call `GitProcess.wait` inside the block if git must finish:
            leaving the block kills it.

        Raises:
            GitalyError: INVALID_ARGUMENT for invalid input (nothing is spawned),
                INTERNAL when git cannot be started.

        Cancellation:
            Leaving the block for any reason (normal exit, exception, cancellation)
            SIGKILLs git's whole process group and reaps git, shielded and bounded by
            `REAP_TIMEOUT_S`, before the block's outcome propagates.

        Resource handling:
            stderr is always piped and read by a task of this context's own nursery,
            keeping its last `STDERR_TAIL_BYTES`. Our pipe ends are closed on exit.
        """
        argv = self.argv(cmd, repo_path=repo_path, config=config)
        environment = with_extra_environment(self._environment, env or {})
        if cwd is not None and "\0" in cwd:
            raise invalid_argument(f"working directory {cwd!r} contains nul")
        try:
            process = await trio.lowlevel.open_process(
                argv,
                stdin=_stdio(stdin),
                stdout=_stdio(stdout),
                stderr=subprocess.PIPE,
                env=environment,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise internal(f"cannot start git {cmd.name}: {exc.strerror}", argv=argv) from exc
        # No checkpoint between here and the `try`: a cancellation delivered in between
        # would leak the process. (`place` is synchronous and does not raise.)
        if self._placer is not None:
            self._placer.place(process.pid, repo_path=repo_path, argv=argv)
        git = GitProcess(process, argv)
        error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(git._drain_stderr, on_stderr)
                try:
                    yield git
                finally:
                    await git._kill_and_reap(terminate_grace_s)
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            error = _unwrap(group)
        if error is not None:
            # Raised outside the `except` so that its context is not the group it was in.
            raise error


def _stdio(spec: int | None) -> int:
    # None means /dev/null, not "inherit": git must never read the server's stdin or
    # write into its stdout (the log stream).
    return subprocess.DEVNULL if spec is None else spec


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception the caller of `spawn` should see instead of the nursery's group.

    The nursery wraps the block's own exception and adds a Cancelled for each task hit by
    the same cancellation. Dropping duplicate Cancelled is safe: the scope that was
    cancelled stays cancelled and catches the one we raise.
    """
    _, rest = group.split(trio.Cancelled)
    if rest is None:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        return first
    if len(rest.exceptions) == 1:
        return rest.exceptions[0]
    return rest


async def _collect(stream: trio.abc.ReceiveStream, chunks: list[bytes | bytearray]) -> None:
    while chunk := await stream.receive_some(READ_CHUNK_BYTES):
        chunks.append(chunk)


def _first_line(stderr: bytes) -> str:
    for line in stderr.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()[:_MAX_ERROR_LINE_CHARS]
    return ""

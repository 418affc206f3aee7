"""A running git process: its environment, its process group, and how it ends.

`version.detect` (which runs git before a `CommandFactory` can exist) and the factory
share the environment and group-killing rules; `GitProcess` is what the factory hands
out for a spawned git.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, final

import trio

from trio_gitaly.errors import invalid_argument

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import trio

#: Set on every git process, whatever our own environment says (Gitaly's shared env).
#: The three config variables stop git reading any global or system config, so behaviour
#: depends only on the `-c` options we pass and the repository's own config; the prompt
#: switch makes git fail instead of waiting for a password on a terminal nobody watches.
FIXED_ENVIRONMENT: Final[Mapping[str, str]] = MappingProxyType(
    {
        "LANG": "en_US.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_SYSTEM": "/dev/null",
        "XDG_CONFIG_HOME": "/dev/null",
    }
)

#: The only variables copied from our own environment (Gitaly's allowlist). Everything
#: else (GIT_DIR, GIT_CONFIG_PARAMETERS, GIT_CONFIG_COUNT, ...) would let whoever started
#: the server change what git does behind the factory's back.
INHERITED_ENVIRONMENT: Final = frozenset(
    {
        "HOME",
        "PATH",
        "LD_LIBRARY_PATH",
        "TZ",
        "GIT_TRACE",
        "GIT_TRACE_PACK_ACCESS",
        "GIT_TRACE_PACKET",
        "GIT_TRACE_PERFORMANCE",
        "GIT_TRACE_SETUP",
        "GIT_EXEC_PATH",
        "GIT_DEFAULT_REF_FORMAT",
        "all_proxy",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
    }
)

_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def base_environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a git process before per-command additions.

    Args:
        source: the environment to inherit from; `os.environ` when None.
    """
    source = os.environ if source is None else source
    env = {name: source[name] for name in INHERITED_ENVIRONMENT if name in source}
    env.update(FIXED_ENVIRONMENT)
    return env


def with_extra_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """`base` plus a caller's per-command variables (e.g. GIT_OBJECT_DIRECTORY).

    Raises:
        GitalyError: INVALID_ARGUMENT for a malformed name, a NUL in a value, or an attempt
            to override one of the `FIXED_ENVIRONMENT` variables.
    """
    env = dict(base)
    for name, value in extra.items():
        if not _ENV_NAME_RE.fullmatch(name):
            raise invalid_argument(f"invalid environment variable name {name!r}")
        if name in FIXED_ENVIRONMENT:
            raise invalid_argument(f"environment variable {name!r} cannot be overridden")
        if "\0" in value:
            raise invalid_argument(f"environment variable {name!r} contains nul")
        env[name] = value
    return env


def kill_process_group(pgid: int) -> None:
    """SIGKILL every process in group `pgid`; a group that is already gone is fine.

    Every git process is started in its own session, so its pid is its group id, and the
    group holds git's children too (pack-objects under upload-pack, transport helpers).
    Killing only git would orphan them with our pipes still open.
    """
    # killpg(0) / killpg(1) would signal our own group or every process we may signal:
    # refuse rather than trust that a pid can never be that small.
    if pgid <= 1:
        raise ValueError(f"refusing to kill process group {pgid}")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


async def feed_all(stream: trio.abc.SendStream, data: bytes) -> None:
    """Write `data` to a child's stdin, then close it.

    A child that exits or stops reading first is not an error here: its exit status
    says whether it needed the rest.

    Cancellation: the stream is closed; part of `data` may have been written.
    """
    try:
        async with stream:
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def deliver_cancel(process: trio.Process) -> None:
    """`deliver_cancel` for `trio.run_process`: kill the whole group at once.

    trio's default sends SIGTERM to the leader only and waits 5 s; git's children would
    survive it and keep our pipes open.
    """
    kill_process_group(process.pid)


#: Where a caller wants git's stderr as it comes: awaited once per chunk.
StderrSink = Callable[[bytes], Awaitable[None]]

#: Read size for git's pipes: the Linux pipe buffer size, so one read empties it.
READ_CHUNK_BYTES: Final = 64 * 1024
#: How much of git's stderr is kept (the end of it): enough for any error message, and a
#: chatty git (GIT_TRACE, fsck on a broken repo) cannot grow our memory.
STDERR_TAIL_BYTES: Final = 64 * 1024
#: How long we wait for a SIGKILLed git to be reaped. SIGKILL cannot be caught, so only
#: a process stuck in the kernel (a hung NFS read) takes longer; we then leave it to the
#: stdlib's zombie collection rather than hang the caller's cancellation.
REAP_TIMEOUT_S: Final = 5.0
#: After git exits, how long `GitProcess.wait` waits for the rest of its stderr. Only a
#: descendant that left our process group (setsid) can hold the pipe open that long.
STDERR_DRAIN_TIMEOUT_S: Final = 1.0


@final
class GitProcess:
    """A running git process, handed out by `CommandFactory.spawn`.

    Attributes:
        argv: the full command line.
        pid: git's pid, which is also its process group id.
        stdin: a stream to git's stdin, when spawned with `stdin=subprocess.PIPE`.
        stdout: a stream from git's stdout, when spawned with `stdout=subprocess.PIPE`;
            read it with `receive_some(READ_CHUNK_BYTES)`.
    """

    def __init__(self, process: trio.Process, argv: Sequence[str]) -> None:
        self._process = process
        self.argv: tuple[str, ...] = tuple(argv)
        self.pid: int = process.pid
        self.stdin: trio.abc.SendStream | None = process.stdin
        self.stdout: trio.abc.ReceiveStream | None = process.stdout
        self._stderr = bytearray()
        self._stderr_done = trio.Event()
        if process.stderr is None:
            # A long-lived process (`CommandFactory.start`) has no stderr pipe to drain.
            self._stderr_done.set()
        # Set once the group got its SIGKILL; see `wait` for why that happens only once.
        self._group_killed = False

    def stderr_tail(self) -> bytes:
        """The last `STDERR_TAIL_BYTES` git wrote to stderr so far."""
        return bytes(self._stderr)

    async def wait(self) -> int:
        """Wait for git to exit, then kill what is left of its group and drain stderr.

        Returns:
            git's exit status (negative for a signal).

        Cancellation:
            Git keeps running; the `spawn` block that owns it kills it on the way out.
        """
        returncode = await self._process.wait()
        # trio reaped git inside `wait` with no checkpoint since, so the kernel cannot
        # have handed its pid to anyone else yet: while any straggler lives, the pid stays
        # reserved as a group id, and with none left a stranger would need a full PID
        # wrap-around in between. Later calls must not kill again: by then it could.
        self._kill_group_once()
        with trio.move_on_after(STDERR_DRAIN_TIMEOUT_S):
            await self._stderr_done.wait()
        return returncode

    def poll(self) -> int | None:
        """git's exit status if it has exited, else None; never blocks.

        An exited git is reaped here, and what is left of its group killed at once, for
        the reason given in `wait`.
        """
        returncode = self._process.returncode
        if returncode is not None:
            self._kill_group_once()
        return returncode

    async def aclose(self) -> None:
        """Kill the group and reap git; close our pipe ends. Safe to call twice.

        Only for processes from `CommandFactory.start`: `spawn` closes its own.

        Cancellation:
            Shielded, and bounded by `REAP_TIMEOUT_S`: it finishes even in a
            cancelled scope.
        """
        await self._kill_and_reap()

    def _kill_group_once(self) -> None:
        if not self._group_killed:
            self._group_killed = True
            kill_process_group(self.pid)

    async def _drain_stderr(self, sink: StderrSink | None = None) -> None:
        stream = self._process.stderr
        assert stream is not None  # spawn always pipes stderr
        try:
            while chunk := await stream.receive_some(READ_CHUNK_BYTES):
                if sink is not None:
                    await sink(bytes(chunk))
                self._stderr += chunk
                if len(self._stderr) > STDERR_TAIL_BYTES:
                    del self._stderr[: len(self._stderr) - STDERR_TAIL_BYTES]
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            self._stderr_done.set()

    async def _kill_and_reap(self, terminate_grace_s: float = 0.0) -> None:
        """Kill the group and reap git, shielded and bounded; then close our pipe ends.

        With `terminate_grace_s`, a git still running first sees the end of its stdin, as
        when a client hangs up, and gets that long to exit and clean up after itself:
        receive-pack removes its quarantine directory at a normal exit only (git 2.39's
        signal handlers leave it behind).
        """
        with trio.CancelScope(shield=True):
            if terminate_grace_s > 0 and self._process.returncode is None:
                if self._process.stdin is not None:
                    await trio.aclose_forcefully(self._process.stdin)
                with trio.move_on_after(terminate_grace_s):
                    await self._process.wait()
            # Unless `wait` already did, git is not reaped yet, so its pid still names
            # our group even if git itself has exited.
            self._kill_group_once()
            with trio.move_on_after(REAP_TIMEOUT_S):
                await self._process.wait()
            for stream in (self._process.stdin, self._process.stdout, self._process.stderr):
                if stream is not None:
                    await trio.aclose_forcefully(stream)

"""Running one transport command: the client's bytes in, git's output out, both streamed.

git's stdin is fed from a `ByteSource` by its own task; its stdout is relayed to a sink
in the caller's task. Each side waits for the other end (flow control), so memory stays
at one chunk per direction whatever the size of the pack.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import trio

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.command import CommandFactory
from trio_gitaly.transport.pktline import BoundaryWatcher

#: Most of git's output relayed at once. git writes a pack in 64 KiB pieces; when the
#: client is slower than git, the pipe fills and one read takes several, so the pack
#: travels in fewer messages (each costs the same Python work whatever its size). Every
#: clone in flight holds a few copies of one piece (read, message, frame), so the size
#: also bounds the server's memory per clone.
RELAY_CHUNK_BYTES: Final = 256 * 1024

#: Where output goes: awaited once per chunk; returns when the chunk may be reused.
Sink = Callable[[bytes], Awaitable[None]]


class ByteSource(Protocol):
    """The client's side of git's stdin."""

    async def read(self) -> bytes:
        """The next chunk of the client's bytes; b"" once the client finished sending.

        Cancellation: raises Cancelled; a chunk not yet returned is lost.
        """
        ...


@dataclass(frozen=True)
class Negotiation:
    """A bound on how long a client may take before the packet that ends its requests."""

    boundary: bytes  # a pkt-line payload, or pktline.FLUSH
    timeout_s: float
    what: str  # for the error message: "negotiation", "upload-archive request"


@dataclass(frozen=True)
class Outcome:
    """How git ended: its exit status and the end of what it wrote to stderr."""

    returncode: int
    stderr: bytes


async def run_session(
    git: CommandFactory,
    cmd: GitCommand,
    *,
    repo_path: str,
    config: Sequence[tuple[str, str]],
    env: Mapping[str, str],
    stdin: ByteSource | None,
    stdout: Sink,
    stderr: Sink | None = None,
    negotiation: Negotiation | None = None,
    terminate_grace_s: float = 0.0,
) -> Outcome:
    """Run `cmd`, feeding it `stdin` and relaying stdout (and stderr) until git exits.

    Raises:
        GitalyError: DEADLINE_EXCEEDED when the client did not finish its requests
            within the negotiation bound; what `spawn` raises.

    Cancellation:
        git's process group is killed (`terminate_grace_s` after closing its stdin)
        and reaped before Cancelled propagates.
    """
    bound = trio.CancelScope(
        deadline=trio.current_time() + negotiation.timeout_s if negotiation else math.inf
    )
    watcher = BoundaryWatcher(negotiation.boundary) if negotiation else None
    with bound:
        async with git.spawn(
            cmd,
            repo_path=repo_path,
            config=config,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else None,
            stdout=subprocess.PIPE,
            on_stderr=stderr,
            terminate_grace_s=terminate_grace_s,
        ) as process:
            async with trio.open_nursery() as nursery:
                if stdin is not None:
                    assert process.stdin is not None
                    nursery.start_soon(_feed, stdin, process.stdin, watcher, bound)
                assert process.stdout is not None
                _widen_pipe(process.stdout)
                while chunk := await process.stdout.receive_some(RELAY_CHUNK_BYTES):
                    await stdout(bytes(chunk))
                returncode = await process.wait()
                # git is done; a client that never half-closes must not keep us here.
                nursery.cancel_scope.cancel()
            return Outcome(returncode, process.stderr_tail())
    assert negotiation is not None  # only the negotiation bound can end up here
    raise GitalyError(
        StatusCode.DEADLINE_EXCEEDED,
        f"waiting for {negotiation.what}: no end of requests after {negotiation.timeout_s:g}s",
    )


def _widen_pipe(stream: trio.abc.ReceiveStream) -> None:
    # Linux pipes hold 64 KiB unless asked (up to 1 MiB unprivileged, by default). A pipe
    # that stays small only means smaller reads.
    fileno = getattr(stream, "fileno", None)
    if fileno is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fileno(), fcntl.F_SETPIPE_SZ, RELAY_CHUNK_BYTES)


async def _feed(
    source: ByteSource,
    sink: trio.abc.SendStream,
    watcher: BoundaryWatcher | None,
    bound: trio.CancelScope,
) -> None:
    try:
        while chunk := await source.read():
            if watcher is not None and watcher.feed(chunk):
                bound.deadline = math.inf
            await sink.send_all(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        # git stopped reading (it exited or closed stdin): the rest is not wanted.
        return
    # The client finished sending, so it can no longer stall the negotiation.
    bound.deadline = math.inf
    await sink.aclose()

"""The `git cat-file --batch-command --buffer` protocol, one request at a time.

A request is `info <rev>\\n` or `contents <rev>\\n`, then `flush\\n` (with `--buffer`, git
writes nothing until told to). git answers "<oid> <type> <size>\\n", followed for
`contents` by exactly <size> bytes and a "\\n"; or "<rev> missing\\n" /
"<rev> ambiguous\\n". Input is newline-terminated (one "\\r" before it is dropped, so a
revision ending in "\\r" is sent with a second one): `-Z` needs git 2.40 and our minimum
is 2.36, so revisions containing a newline or NUL are refused before anything is sent.

The process stays usable only if every answer is read to its end. A request that does
not finish (cancelled, `send` raised, git died) marks the process broken, and the cache
kills it instead of pooling it.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, Final, final

import msgspec
import trio

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.command import READ_CHUNK_BYTES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from trio_gitaly.git.command import GitProcess

__all__ = ["LOOKUP_TYPES", "STREAM_CHUNK_BYTES", "BatchProcess", "ObjectInfo", "ObjectReader"]

#: The `type` labels of `gitaly_catfile_lookups_total`: info requests, and content
#: requests by the object's type.
LOOKUP_TYPES: Final = ("info", "blob", "tree", "commit", "tag")

#: Default largest chunk `ObjectReader.stream` hands to `send` (Gitaly streams blobs in
#: 128 KiB messages).
STREAM_CHUNK_BYTES: Final = 128 * 1024
# A header line is "<oid> <type> <size>" (at most 64 + 1 + 6 + 1 + 20 bytes) or the
# revision plus " missing": anything longer means we are out of step with git.
_HEADER_SLACK_BYTES: Final = 128
_HEADER_RE: Final = re.compile(rb"([0-9a-f]{40}|[0-9a-f]{64}) (blob|tree|commit|tag) ([0-9]+)")
_NOT_FOUND_SUFFIXES: Final = (b" missing", b" ambiguous")


class ObjectInfo(msgspec.Struct, frozen=True):
    """What git says about an object: its full id, type and size in bytes."""

    oid: str
    type: str
    size: int


@final
class BatchProcess:
    """A cat-file process and the unread part of its stdout.

    Used by one task at a time, through `ObjectReader`; owned by `CatfileCache`.
    """

    def __init__(self, git: GitProcess) -> None:
        # trio's Process pipes on Unix: non-blocking descriptors we can use directly.
        assert isinstance(git.stdin, trio.lowlevel.FdStream)
        assert isinstance(git.stdout, trio.lowlevel.FdStream)
        self.git = git
        self._stdin = git.stdin
        self._stdout = git.stdout
        self._buffer = bytearray()
        # Whether the current request has passed a schedule point (see `ask`).
        self._waited = False
        self._busy = False
        self.broken = False

    def alive(self) -> bool:
        """Whether git is still running (an exited git is reaped here)."""
        return self.git.poll() is None

    def clean(self) -> bool:
        """Whether the next request would start in step with git: safe to pool.

        Liveness is not polled here: a git that died during a request broke it already,
        and one that dies while idle is caught when it is checked out, before use. One
        waitpid per call is measurable at thousands of calls a second.
        """
        return not self.broken and not self._busy and not self._buffer

    async def aclose(self) -> None:
        """Kill and reap git; shielded and bounded (`GitProcess.aclose`)."""
        self.broken = True
        await self.git.aclose()

    def request(self) -> _Request:
        """Mark one request (`with`): if it does not finish, the process is broken for good."""
        if self._busy:
            raise trio.BusyResourceError("another task is using this object reader")
        if self.broken:
            raise internal("cat-file process is out of sync after a failed request")
        return _Request(self)

    async def ask(self, command: bytes, revision: bytes) -> ObjectInfo | None:
        """Send one command and read its header line.

        The pipes are used directly rather than through FdStream's send_all and
        receive_some, which take a schedule point on every call: a lookup costs one
        wait for git's answer instead of three passes through the scheduler, a
        fifth of a cached lookup's CPU. The request still has one schedule point.
        """
        # git reads commands with strbuf_getline, which drops one "\r" before the "\n"
        # (CRLF input): a revision ending in "\r" ("HEAD:dir\r") gets a second one.
        if revision.endswith(b"\r"):
            revision += b"\r"
        self._waited = False
        await self._send(command + b" " + revision + b"\nflush\n")
        line = await self._read_line(len(revision) + _HEADER_SLACK_BYTES)
        if not self._waited:
            # git answered before we looked: still let other tasks run, so that a
            # loop of lookups cannot hold the scheduler.
            await trio.lowlevel.checkpoint()
        if line.endswith(_NOT_FOUND_SUFFIXES):
            return None
        match = _HEADER_RE.fullmatch(line)
        if match is None:
            raise internal("cat-file answered with an invalid header", line=line[:200])
        oid, kind, size = match.groups()
        return ObjectInfo(oid.decode(), kind.decode(), int(size))

    async def _send(self, data: bytes) -> None:
        try:
            sent = os.write(self._stdin.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise internal("cat-file process exited unexpectedly") from exc
        if sent < len(data):
            # A full pipe: git is behind (a huge revision); let trio wait for room.
            self._waited = True
            try:
                await self._stdin.send_all(data[sent:])
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise internal("cat-file process exited unexpectedly") from exc

    async def receive(self, max_bytes: int) -> bytes:
        """Up to `max_bytes` (> 0) of git's output, buffered bytes first."""
        if not self._buffer:
            await self._fill(max_bytes)
        chunk = bytes(self._buffer[:max_bytes])
        del self._buffer[:max_bytes]
        return chunk

    async def receive_exactly(self, size: int) -> bytes:
        """The next `size` bytes of git's output."""
        while len(self._buffer) < size:
            await self._fill(size - len(self._buffer))
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        return chunk

    async def discard(self, size: int) -> None:
        """Read and drop the next `size` bytes of git's output."""
        while size:
            size -= len(await self.receive(size))

    async def end_of_object(self) -> None:
        """Read the newline that follows an object's content."""
        if await self.receive(1) != b"\n":
            raise internal("cat-file object content is not followed by a newline")

    async def _read_line(self, max_bytes: int) -> bytes:
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > max_bytes:
                raise internal("cat-file header line is too long")
            await self._fill(READ_CHUNK_BYTES)
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    async def _fill(self, max_bytes: int) -> None:
        # Never more than asked for: after a full answer nothing may stay buffered,
        # which is how `clean` tells a finished request from an abandoned one.
        fd = self._stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, min(max_bytes, READ_CHUNK_BYTES))
                break
            except BlockingIOError:
                self._waited = True
                try:
                    await trio.lowlevel.wait_readable(fd)
                except trio.ClosedResourceError as exc:
                    raise internal("cat-file process exited unexpectedly") from exc
            except OSError as exc:
                raise internal("cat-file process exited unexpectedly") from exc
        if not chunk:
            raise internal("cat-file process exited unexpectedly")
        self._buffer += chunk


@final
class _Request:
    """One request's span: busy while it runs, broken if it is left by an exception.

    A class rather than a @contextmanager generator: every lookup takes one.
    """

    __slots__ = ("_process",)

    def __init__(self, process: BatchProcess) -> None:
        self._process = process

    def __enter__(self) -> None:
        self._process._busy = True

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self._process._busy = False
        if kind is not None:
            self._process.broken = True


class ObjectTooLargeError(GitalyError):
    """`ObjectReader.read` found an object over its `max_size`: FAILED_PRECONDITION."""

    def __init__(self, info: ObjectInfo, max_size: int) -> None:
        super().__init__(
            StatusCode.FAILED_PRECONDITION,
            f"object {info.oid!r} is {info.size} bytes, more than {max_size}",
        )
        self.info = info


@final
class ObjectReader:
    """Reads objects through one checked-out cat-file process (`CatfileCache.reader`).

    One request at a time: concurrent use raises `trio.BusyResourceError`. After a
    request that did not finish, every further request raises INTERNAL.
    """

    def __init__(self, process: BatchProcess, lookups: Mapping[str, Any]) -> None:
        """`lookups`: the `gitaly_catfile_lookups_total` child of each `LOOKUP_TYPES`."""
        self._process: BatchProcess | None = process
        self._lookups = lookups

    @property
    def pid(self) -> int:
        """The pid of the git process behind this reader."""
        return self._checked_out().git.pid

    async def info(self, revision: bytes | str) -> ObjectInfo | None:
        """The id, type and size of the object `revision` names; None if missing.

        Raises:
            GitalyError: INVALID_ARGUMENT for a revision with a newline or NUL,
                INTERNAL when git fails.

        Cancellation:
            Cancelled mid-request, the process is broken and will be killed.
        """
        rev = _revision(revision)
        process = self._checked_out()
        with process.request():
            info = await process.ask(b"info", rev)
        self._lookups["info"].inc()
        return info

    async def read(
        self, revision: bytes | str, *, max_size: int | None = None
    ) -> tuple[ObjectInfo, bytes] | None:
        """The whole object `revision` names, in memory; None if missing.

        For commits, tags and trees; stream blobs with `stream`.

        Args:
            max_size: refuse objects larger than this many bytes (their content is
                read and discarded, keeping the process in step).

        Raises:
            ObjectTooLargeError: the object is over `max_size`.
            GitalyError: INVALID_ARGUMENT for a bad revision, INTERNAL when git fails.

        Cancellation:
            Cancelled mid-request, the process is broken and will be killed.
        """
        rev = _revision(revision)
        process = self._checked_out()
        with process.request():
            info = await process.ask(b"contents", rev)
            if info is None:
                return None
            self._lookups[info.type].inc()
            too_large = max_size is not None and info.size > max_size
            if too_large:
                await process.discard(info.size)
                data = b""
            else:
                data = await process.receive_exactly(info.size)
            await process.end_of_object()
        if too_large:
            raise ObjectTooLargeError(info, max_size or 0)
        return info, data

    async def stream(
        self,
        revision: bytes | str,
        send: Callable[[bytes], Awaitable[None]],
        *,
        limit: int = -1,
        chunk_bytes: int = STREAM_CHUNK_BYTES,
    ) -> ObjectInfo | None:
        """Pass the content of `revision` to `send` in chunks; None if missing.

        At most `chunk_bytes` are held in memory, whatever the object's size.

        Args:
            send: awaited with each chunk (1 to `chunk_bytes` bytes, in order).
            limit: send at most this many bytes; -1 for all. The rest is read and
                discarded so that the process stays in step.
            chunk_bytes: the largest chunk.

        Returns:
            The object's info (its full size, even when `limit` cut it short).

        Raises:
            GitalyError: INVALID_ARGUMENT for a bad revision, INTERNAL when git fails;
                and whatever `send` raises.

        Cancellation:
            Cancelled mid-request (or `send` raising), the process is broken and will
            be killed; `send` may have received part of the object.
        """
        if chunk_bytes <= 0:
            raise ValueError("chunk_bytes must be positive")
        rev = _revision(revision)
        process = self._checked_out()
        with process.request():
            info = await process.ask(b"contents", rev)
            if info is None:
                return None
            self._lookups[info.type].inc()
            wanted = info.size if limit < 0 else min(limit, info.size)
            pending = bytearray()
            remaining = info.size
            while remaining:
                chunk = await process.receive(remaining)
                remaining -= len(chunk)
                keep = max(0, min(len(chunk), wanted))
                wanted -= keep
                pending += chunk[:keep]
                while len(pending) >= chunk_bytes:
                    await send(bytes(pending[:chunk_bytes]))
                    del pending[:chunk_bytes]
            if pending:
                await send(bytes(pending))
            await process.end_of_object()
        return info

    def _release(self) -> None:
        self._process = None

    def _checked_out(self) -> BatchProcess:
        if self._process is None:
            raise trio.ClosedResourceError("object reader used after its reader() block")
        return self._process


def _revision(revision: bytes | str) -> bytes:
    rev = revision.encode() if isinstance(revision, str) else bytes(revision)
    # The protocol is line-based: a newline would start a second command, and git
    # would end the revision at a NUL.
    if b"\n" in rev:
        raise invalid_argument(f"revision {revision!r} contains a newline")
    if b"\0" in rev:
        raise invalid_argument(f"revision {revision!r} contains nul")
    return rev

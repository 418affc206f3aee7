"""Reading the objects a walk lists: pipelined through a cat-file of the request's own.

A request to a cached cat-file (`catfile.ObjectReader`) is a full round trip, about a
quarter of a millisecond here: fine for a few objects, but a walk over ten thousand
commits would spend seconds waiting. So a walk that may be long starts one
`git cat-file --batch` for the request and keeps it busy: a feeder task writes the ids
the walk yields while the caller reads the answers in the same order. git blocks when
the caller is slow (pipes are bounded), so memory stays at a pipe's worth of answers.

`read_walk` runs that pipeline, or the same steps one object at a time through a cached
reader when the caller expects only a few objects.
"""

from __future__ import annotations

import re
import subprocess
from collections import deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from trio_gitaly.errors import internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.catfile_reader import ObjectInfo, ObjectReader
from trio_gitaly.git.command import READ_CHUNK_BYTES

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

    from trio_gitaly.git.command import CommandFactory, GitProcess
    from trio_gitaly.git.revlist import Records

__all__ = ["FLUSH_BYTES", "ObjectPipe", "lookup", "object_pipe", "read_walk"]

#: Ids are written to cat-file once this many bytes are queued, or when the walk has
#: no more output ready (so cat-file never waits on ids we hold back).
FLUSH_BYTES: Final = 16 * 1024
# "<oid> <type> <size>"; anything else ending in " missing" or " ambiguous" is an
# unknown revision.
_HEADER_RE: Final = re.compile(rb"([0-9a-f]{40}|[0-9a-f]{64}) (blob|tree|commit|tag) ([0-9]+)")
_NOT_FOUND_SUFFIXES: Final = (b" missing", b" ambiguous")
# A header is an id, a type and a size, or a revision we sent and " missing": lines
# longer than the longest revision plus this are not cat-file's.
_HEADER_SLACK_BYTES: Final = 128

T = TypeVar("T")


class ObjectPipe:
    """A `git cat-file --batch` (or `--batch-check`) that answers in request order.

    One task queues revisions (`queue`, `flush`, `close_input`) while another reads the
    answers (`next`). Revisions may not contain a newline or NUL (cat-file's input is
    line-based).
    """

    def __init__(self, process: GitProcess, *, contents: bool) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self._process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._contents = contents
        self._out = bytearray()
        self._in = bytearray()
        self._longest = 0
        self._eof = False

    def queue(self, revision: bytes) -> None:
        """Queue a request; it is written by the next `flush` (or one that is due)."""
        if b"\n" in revision or b"\x00" in revision:
            raise invalid_argument("revision contains a newline or NUL")
        self._longest = max(self._longest, len(revision))
        self._out += revision + b"\n"

    @property
    def flush_due(self) -> bool:
        """Whether enough requests are queued to be worth a write."""
        return len(self._out) >= FLUSH_BYTES

    async def flush(self) -> None:
        """Write the queued requests.

        Cancellation: raises Cancelled; the pipe is then unusable (the block kills git).
        """
        if self._out:
            data, self._out = bytes(self._out), bytearray()
            try:
                await self._stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise internal("cat-file exited unexpectedly") from exc

    async def close_input(self) -> None:
        """Write what is queued and close git's stdin: it answers the rest and exits."""
        await self.flush()
        await self._stdin.aclose()

    async def next(self) -> tuple[ObjectInfo | None, bytes] | None:
        """The answer to the oldest unanswered request: (info, content) with info None
        for an unknown revision (content is empty with --batch-check); None once git
        has answered everything after `close_input`.

        Raises:
            GitalyError: INTERNAL when git's output is not cat-file's, or git failed.
        """
        line = await self._line()
        if line is None:
            return None
        if line.endswith(_NOT_FOUND_SUFFIXES):
            return None, b""
        match = _HEADER_RE.fullmatch(line)
        if match is None:
            raise internal("cat-file answered with an invalid header", line=line[:200])
        oid, kind, size_text = match.groups()
        info = ObjectInfo(oid.decode(), kind.decode(), int(size_text))
        if not self._contents:
            return info, b""
        data = await self._exactly(info.size + 1)
        if data[-1:] != b"\n":
            raise internal("cat-file object content is not followed by a newline")
        return info, data[:-1]

    async def _line(self) -> bytes | None:
        while (end := self._in.find(b"\n")) < 0:
            if len(self._in) > self._longest + _HEADER_SLACK_BYTES:
                raise internal("cat-file header line is too long")
            if not await self._fill():
                if self._in:
                    raise internal("cat-file output ends in the middle of a line")
                await self._finish()
                return None
        line = bytes(self._in[:end])
        del self._in[: end + 1]
        return line

    async def _exactly(self, size: int) -> bytes:
        while len(self._in) < size:
            if not await self._fill():
                raise internal("cat-file output ends in the middle of an object")
        data = bytes(self._in[:size])
        del self._in[:size]
        return data

    async def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = await self._stdout.receive_some(READ_CHUNK_BYTES)
        if not chunk:
            self._eof = True
            return False
        self._in += chunk
        return True

    async def _finish(self) -> None:
        returncode = await self._process.wait()
        if returncode != 0:
            raise internal(f"cat-file: exit status {returncode}")


@asynccontextmanager
async def object_pipe(
    git: CommandFactory,
    repo_path: str,
    env: Mapping[str, str] | None = None,
    *,
    contents: bool = True,
) -> AsyncIterator[ObjectPipe]:
    """Start a cat-file for this block: `--batch` with `contents`, else `--batch-check`.

    Not `--buffer`: git writes each answer at once, so the reader never waits for a
    buffer to fill while the walk feeding it is slow.

    Cancellation:
        Leaving the block for any reason kills git and reaps it.
    """
    cmd = GitCommand(
        "cat-file", flags=["--batch" if contents else "--batch-check"], end_of_options=False
    )
    async with git.spawn(cmd, repo_path=repo_path, env=env, stdin=subprocess.PIPE) as process:
        yield ObjectPipe(process, contents=contents)


async def read_walk(
    records: Records,
    objects: ObjectPipe | ObjectReader,
    select: Callable[[bytes], tuple[bytes, T] | None],
    sink: Callable[[T, ObjectInfo | None, bytes], Awaitable[bool]],
) -> bool:
    """Read the object of each selected walk record and hand it to `sink`, in order.

    Args:
        records: the walk's output.
        objects: a pipe (pipelined) or a cached reader (one round trip per object).
        select: for a record, the revision to read and a tag passed on to `sink`; None
            skips the record.
        sink: gets the tag, the object's info (None if git has no such object) and its
            content; returns False to stop.

    Returns:
        True when every record was read and every object handed over; False when
        `sink` stopped (the walk and the pipe are then abandoned: leave their blocks).

    Cancellation:
        As the walk's and the pipe's: leaving their blocks kills the processes.
    """
    if isinstance(objects, ObjectReader):
        while (record := await records.next()) is not None:
            selected = select(record)
            if selected is None:
                continue
            revision, tag = selected
            found = await objects.read(revision)
            info, data = found if found is not None else (None, b"")
            if not await sink(tag, info, data):
                return False
        return True
    return await _pipelined(records, objects, select, sink)


async def _pipelined(
    records: Records,
    pipe: ObjectPipe,
    select: Callable[[bytes], tuple[bytes, T] | None],
    sink: Callable[[T, ObjectInfo | None, bytes], Awaitable[bool]],
) -> bool:
    tags: deque[T] = deque()

    async def feed() -> None:
        while (record := await records.next()) is not None:
            selected = select(record)
            if selected is not None:
                revision, tag = selected
                tags.append(tag)
                pipe.queue(revision)
            # Hold ids back only while the walk has more ready, never across a wait.
            if pipe.flush_due or not records.ready:
                await pipe.flush()
        await pipe.close_input()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            while (answer := await pipe.next()) is not None:
                info, data = answer
                if not await sink(tags.popleft(), info, data):
                    nursery.cancel_scope.cancel()
                    return False
    except BaseExceptionGroup as group:
        raise _first_error(group) from None
    return True


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to raise for a failed pipeline: the feeder's or the reader's own, not
    the Cancelled the other task got because of it."""
    _, rest = group.split(trio.Cancelled)
    leaves: list[BaseException] = []
    pending: list[BaseException] = [rest if rest is not None else group]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending[:0] = list(current.exceptions)
        else:
            leaves.append(current)
    return leaves[0]


async def lookup(pipe: ObjectPipe, revisions: Sequence[bytes]) -> list[ObjectInfo | None]:
    """What the pipe's cat-file says about each revision (None: unknown), in order.

    The requests are written while the answers are read, so any number fits through
    the pipes. The pipe stays open for more.

    Cancellation: the pipe is then out of step; leave its block.
    """
    answers: list[ObjectInfo | None] = []

    async def feed() -> None:
        for revision in revisions:
            pipe.queue(revision)
            if pipe.flush_due:
                await pipe.flush()
        await pipe.flush()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            for _ in revisions:
                answer = await pipe.next()
                if answer is None:
                    raise internal("cat-file exited unexpectedly")
                answers.append(answer[0])
    except BaseExceptionGroup as group:
        raise _first_error(group) from None
    return answers

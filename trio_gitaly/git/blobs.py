"""Enumerating blobs: by graph walk (`git rev-list --objects`) or every object on disk.

Both run one git process whose output is read line by line while the caller works on
each object (reads it through the cat-file cache, sends it to the client): nothing is
collected, and git blocks on a full pipe while the client is slow. Leaving the context
manager kills git, so stopping early at a limit costs nothing.
"""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import GitalyError, StatusCode, internal
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.catfile_reader import ObjectInfo
from trio_gitaly.git.command import READ_CHUNK_BYTES
from trio_gitaly.git.revlist import rev_list_command
from trio_gitaly.goformat import go_quote

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    import trio

    from trio_gitaly.git.command import CommandFactory, GitProcess

__all__ = [
    "MAX_LINE_BYTES",
    "ListedObject",
    "all_objects",
    "walk_blobs",
]

#: Longest output line accepted from git (Go's bufio.Scanner limit, which Gitaly's
#: parsers inherit): a path longer than this in a tree fails the listing.
MAX_LINE_BYTES: Final = 64 * 1024

# "<oid> <type> <size>" from `cat-file --batch-check`.
_BATCH_CHECK_RE: Final = re.compile(rb"([0-9a-f]{40}|[0-9a-f]{64}) ([a-z]+) ([0-9]+)")


@dataclass(frozen=True)
class ListedObject:
    """An object printed by `rev-list --objects`.

    Attributes:
        oid: the object id.
        name: the path it was reached by; None for objects named on the command line
            by id (git prints no path for those).
    """

    oid: str
    name: bytes | None


class _Lines:
    """The lines (without "\\n") of a git process's stdout; at EOF, git must succeed."""

    def __init__(self, process: GitProcess, what: str) -> None:
        assert process.stdout is not None
        self._process = process
        self._stdout: trio.abc.ReceiveStream = process.stdout
        self._what = what
        self._buffer = bytearray()
        self._eof = False

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > MAX_LINE_BYTES:
                raise internal(f"scanning {self._what} output: line too long")
            if self._eof:
                break
            chunk = await self._stdout.receive_some(READ_CHUNK_BYTES)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True
        if self._buffer:
            # git ends every line with "\n"; a last line without one is still a line.
            line, self._buffer = bytes(self._buffer), bytearray()
            return line
        returncode = await self._process.wait()
        if returncode != 0:
            raise GitalyError(
                StatusCode.INTERNAL,
                f"{self._what}: exit status {returncode}, "
                f"stderr: {go_quote(self._process.stderr_tail())}",
                metadata={"argv": list(self._process.argv)},
            )
        raise StopAsyncIteration


class _ListedObjects:
    def __init__(self, lines: _Lines) -> None:
        self._lines = lines

    def __aiter__(self) -> _ListedObjects:
        return self

    async def __anext__(self) -> ListedObject:
        line = await self._lines.__anext__()
        oid, _, name = line.partition(b" ")
        return ListedObject(oid.decode("ascii", "replace"), name or None)


class _ObjectInfos:
    def __init__(self, lines: _Lines) -> None:
        self._lines = lines

    def __aiter__(self) -> _ObjectInfos:
        return self

    async def __anext__(self) -> ObjectInfo:
        line = await self._lines.__anext__()
        match = _BATCH_CHECK_RE.fullmatch(line)
        if match is None:
            raise internal(f"parsing object info: invalid info line: {go_quote(line)}")
        oid, kind, size = match.groups()
        return ObjectInfo(oid.decode(), kind.decode(), int(size))


@asynccontextmanager
async def walk_blobs(
    git: CommandFactory,
    repo_path: str,
    env: Mapping[str, str],
    revisions: Sequence[str],
    *,
    smaller_than: int | None = None,
) -> AsyncIterator[AsyncIterator[ListedObject]]:
    """The blobs reachable from `revisions`, in `rev-list --in-commit-order` order.

    Args:
        git: the command factory.
        repo_path, env: the repository and its object-directory environment.
        revisions: validated revisions, pseudo-revisions allowed (`--all`, `--not`).
        smaller_than: only blobs of fewer bytes than this (`--filter=blob:limit`).

    Yields:
        An async iterator of the blobs, each once, with the path it was first reached
        by. Revisions naming a blob (by id or `rev:path`) are listed too. When git
        fails (an unknown revision), the iteration raises INTERNAL
        `rev-list pipeline command: exit status N, stderr: "..."`, as Gitaly words it.

    Cancellation:
        Leaving the block, for any reason, kills rev-list.
    """
    flags = ["--in-commit-order", "--objects", "--object-names"]
    if smaller_than is not None:
        flags.append(f"--filter=blob:limit={smaller_than}")
    flags += ["--filter=object:type=blob", "--filter-provided-objects"]
    cmd = rev_list_command(flags, [revision.encode() for revision in revisions])
    async with git.spawn(cmd, repo_path=repo_path, env=env) as process:
        yield _ListedObjects(_Lines(process, "rev-list pipeline command"))


@asynccontextmanager
async def all_objects(
    git: CommandFactory, repo_path: str, env: Mapping[str, str]
) -> AsyncIterator[AsyncIterator[ObjectInfo]]:
    """Every object in the object database, reachable or not, in no particular order.

    With a quarantine environment (`GIT_OBJECT_DIRECTORY`, alternates) that is the
    quarantine's objects and those of the alternates given.

    Yields:
        An async iterator of each object's id, type and size (`cat-file
        --batch-all-objects --batch-check --unordered`).

    Cancellation:
        Leaving the block, for any reason, kills cat-file.
    """
    cmd = GitCommand(
        "cat-file",
        flags=["--batch-check", "--batch-all-objects", "--buffer", "--unordered"],
        end_of_options=False,
    )
    async with git.spawn(cmd, repo_path=repo_path, env=env) as process:
        yield _ObjectInfos(_Lines(process, "cat-file failed"))

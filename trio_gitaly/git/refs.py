"""Reading references: one streamed `git for-each-ref`, and the few ref questions around it.

`for_each_ref` runs a single for-each-ref whose `--format` joins the wanted fields with
NUL (`%00`) and ends each record with git's newline. Neither separator can occur inside
a field the callers ask for (reference names forbid both, object ids and types are hex
and words), so records split without quoting however odd a name's bytes are. Records are
read as they arrive; a caller that stops early (a page limit) leaves the block, which
kills git instead of letting it list the rest.

Also here: Gitaly's default-branch rule, HEAD's symbolic target, whether a revision
resolves, the object format, and object reads through cat-file that never buffer a big
blob only to throw it away.
"""

from __future__ import annotations

from collections import deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.catfile_reader import ObjectInfo, ObjectReader, ObjectTooLargeError
from trio_gitaly.git.command import READ_CHUNK_BYTES
from trio_gitaly.goformat import go_quote, go_quote_rune

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from trio_gitaly.git.command import CommandFactory, GitProcess

__all__ = [
    "DEFAULT_REF",
    "LEGACY_DEFAULT_REF",
    "SMALL_OBJECT_BYTES",
    "RefListingError",
    "RefRecords",
    "default_branch",
    "for_each_ref",
    "head_reference",
    "object_format",
    "read_small_object",
    "resolves",
    "validate_object_id",
]

#: Gitaly's default branch and the one before it, tried after HEAD's target.
DEFAULT_REF: Final = b"refs/heads/main"
LEGACY_DEFAULT_REF: Final = b"refs/heads/master"
#: Objects up to this size are read in one go by `read_small_object`; a larger blob or
#: tree is skipped (git still sends it, we do not keep it). Commits and tags of any
#: size are read.
SMALL_OBJECT_BYTES: Final = 64 * 1024
# A record longer than this is not a for-each-ref record of ours (names are bounded by
# the filesystem's path limits, far below it): refuse instead of growing without bound.
_MAX_RECORD_BYTES: Final = 1024 * 1024
_HEX_DIGITS: Final = frozenset("0123456789abcdef")
_HEX_LENGTHS: Final = {"sha1": 40, "sha256": 64}


class RefListingError(GitalyError):
    """for-each-ref exited non-zero: INTERNAL "listing failed with exit code N".

    Attributes:
        returncode: git's exit status (129 for bad usage, such as an unknown object
            in --points-at, --contains or --merged).
        stderr: the end of git's stderr, for the log.
    """

    def __init__(self, returncode: int, stderr: bytes) -> None:
        super().__init__(
            StatusCode.INTERNAL,
            f"listing failed with exit code {returncode}",
            metadata={"stderr": stderr.decode("utf-8", "replace")},
        )
        self.returncode = returncode
        self.stderr = stderr


class RefRecords:
    """The records of a running for-each-ref, read on demand (`async for fields in ...`).

    Each record is a tuple of the requested fields, as bytes. Use `exhausted` to tell
    whether git was read to its end (only then was its exit status checked).
    """

    def __init__(self, process: GitProcess, field_count: int) -> None:
        assert process.stdout is not None
        self._process = process
        self._stdout = process.stdout
        self._field_count = field_count
        self._buffer = bytearray()
        self._records: deque[tuple[bytes, ...]] = deque()
        self.exhausted = False

    def __aiter__(self) -> RefRecords:
        return self

    async def __anext__(self) -> tuple[bytes, ...]:
        record = await self.next()
        if record is None:
            raise StopAsyncIteration
        return record

    async def next(self) -> tuple[bytes, ...] | None:
        """The next record, or None after the last one.

        Raises:
            RefListingError: git exited non-zero.
            GitalyError: INTERNAL for output that is not in our format.

        Cancellation:
            Safe at any point; the `for_each_ref` block kills git when it is left.
        """
        while not self._records:
            if self.exhausted:
                return None
            await self._fill()
        return self._records.popleft()

    async def _fill(self) -> None:
        chunk = await self._stdout.receive_some(READ_CHUNK_BYTES)
        if not chunk:
            await self._finish()
            return
        self._buffer += chunk
        end = self._buffer.rfind(b"\n")
        if end < 0:
            if len(self._buffer) > _MAX_RECORD_BYTES:
                raise internal("for-each-ref record is too long")
            return
        lines = bytes(self._buffer[:end]).split(b"\n")
        del self._buffer[: end + 1]
        self._records.extend(self._parse(line) for line in lines)

    def _parse(self, line: bytes) -> tuple[bytes, ...]:
        fields = tuple(line.split(b"\0"))
        if len(fields) != self._field_count:
            raise internal("unexpected for-each-ref output", line=line[:200])
        return fields

    async def _finish(self) -> None:
        self.exhausted = True
        if self._buffer:
            raise internal("for-each-ref output ends in the middle of a record")
        returncode = await self._process.wait()
        if returncode != 0:
            raise RefListingError(returncode, self._process.stderr_tail())


@asynccontextmanager
async def for_each_ref(
    git: CommandFactory,
    repo_path: str,
    *,
    fields: Sequence[str],
    patterns: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    sort: str = "",
    points_at: Sequence[str] = (),
    merged: str | None = None,
    contains: str | None = None,
    count: int = 0,
) -> AsyncIterator[RefRecords]:
    """Run `git for-each-ref` and hand out its records as they arrive.

    Args:
        git: the command factory.
        repo_path: the repository.
        fields: for-each-ref atoms without `%(...)`, e.g. ("refname", "objectname").
        patterns: ref patterns (prefixes or globs); none lists every reference.
        env: extra environment (quarantine directories).
        sort: a `--sort` key ("-committerdate"); empty leaves git's order (refname).
        points_at: `--points-at` values, one flag each.
        merged: a `--merged` revision, or None.
        contains: a `--contains` revision, or None.
        count: `--count` when positive.

    Yields:
        The records, valid inside this block only.

    Raises:
        GitalyError: INVALID_ARGUMENT for a pattern starting with "-" or containing
            NUL (nothing is spawned).

    Cancellation:
        Leaving the block for any reason kills for-each-ref and reaps it.
    """
    flags = ["--format=" + "%00".join(f"%({name})" for name in fields)]
    if sort:
        flags.append(f"--sort={sort}")
    flags += [f"--points-at={oid}" for oid in points_at]
    if merged is not None:
        flags.append(f"--merged={merged}")
    if contains is not None:
        flags.append(f"--contains={contains}")
    if count > 0:
        flags.append(f"--count={count}")
    command = GitCommand("for-each-ref", flags=flags, args=patterns)
    async with git.spawn(command, repo_path=repo_path, env=env) as process:
        yield RefRecords(process, len(fields))


async def head_reference(
    git: CommandFactory, repo_path: str, env: Mapping[str, str] | None = None
) -> bytes:
    """The reference HEAD points at (`git symbolic-ref HEAD`), existing or not.

    Raises:
        GitCommandError: HEAD is detached or unreadable (INTERNAL, exit status 128).

    Cancellation:
        git is killed and reaped; nothing is returned.
    """
    result = await git.run(
        GitCommand("symbolic-ref", args=["HEAD"]), repo_path=repo_path, env=env, check=True
    )
    target, newline, rest = result.stdout.partition(b"\n")
    if not newline or rest:
        raise internal("unexpected symbolic-ref output")
    return target


async def resolves(
    git: CommandFactory, repo_path: str, revision: bytes, env: Mapping[str, str] | None = None
) -> bool:
    """Whether `rev-parse --verify` resolves `revision` (its DWIM rules included).

    Cancellation: git is killed and reaped.
    """
    result = await git.run(
        GitCommand(
            "rev-parse",
            flags=["--verify"],
            args=[revision.decode("utf-8", "surrogateescape")],
        ),
        repo_path=repo_path,
        env=env,
        check=False,
    )
    return result.returncode == 0


async def default_branch(
    git: CommandFactory, repo_path: str, env: Mapping[str, str] | None = None
) -> bytes:
    """The default branch as Gitaly decides it; b"" when the repository has no branch.

    HEAD's target if it resolves, else refs/heads/main, else refs/heads/master, else the
    first branch by name. (GitLab depends on this order, not on HEAD alone.)

    Raises:
        GitCommandError: HEAD is not a symbolic reference (INTERNAL).

    Cancellation:
        The git command running at the time is killed and reaped.
    """
    head = await head_reference(git, repo_path, env)
    for candidate in (head, DEFAULT_REF, LEGACY_DEFAULT_REF):
        if await resolves(git, repo_path, candidate, env):
            return candidate
    async with for_each_ref(
        git, repo_path, fields=("refname",), patterns=("refs/heads/",), env=env, count=1
    ) as records:
        first = await records.next()
    return first[0] if first is not None else b""


async def object_format(
    git: CommandFactory, repo_path: str, env: Mapping[str, str] | None = None
) -> str:
    """The repository's object format: "sha1" or "sha256".

    Cancellation: git is killed and reaped.
    """
    result = await git.run(
        GitCommand("rev-parse", flags=["--show-object-format"]),
        repo_path=repo_path,
        env=env,
        check=True,
    )
    name = result.stdout.decode("ascii", "replace").strip()
    if name not in _HEX_LENGTHS:
        raise internal(f"unknown object format {name!r}")
    return name


def validate_object_id(oid: str, fmt: str) -> str:
    """A full hex object id of format `fmt`, with Gitaly's messages (INVALID_ARGUMENT)."""
    length = _HEX_LENGTHS[fmt]
    if len(oid) != length:
        raise invalid_argument(
            f"invalid object ID: {go_quote(oid)}, expected length {length}, got {len(oid)}"
        )
    for char in oid:
        if char not in _HEX_DIGITS:
            raise invalid_argument(
                f"invalid object ID: {go_quote(oid)}, invalid character {go_quote_rune(char)}"
            )
    return oid


async def read_small_object(
    reader: ObjectReader, revision: bytes | str
) -> tuple[ObjectInfo, bytes | None] | None:
    """Read an object whole unless it is a big blob or tree; None when it is missing.

    Commits and tags always come with their content; a blob or tree over
    `SMALL_OBJECT_BYTES` comes with None (it is read past, never held).

    Cancellation:
        Cancelled mid-read, the cat-file process is broken and will be killed.
    """
    try:
        found = await reader.read(revision, max_size=SMALL_OBJECT_BYTES)
    except ObjectTooLargeError as error:
        if error.info.type not in ("commit", "tag"):
            return error.info, None
        found = await reader.read(error.info.oid)
    if found is None:
        return None
    info, data = found
    return info, data

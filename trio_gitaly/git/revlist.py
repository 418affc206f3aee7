"""Commit walks: `git rev-list` and `git log` command lines, their streamed output, parsing.

One git process per walk. Its stdout is read as it arrives and split into records at a
separator that cannot occur inside a record (object ids are hex, reference names forbid
control characters, shortstat lines are ASCII), so nothing needs unquoting and the
memory held is one record. A caller that has enough (a page limit) leaves the `walk`
block, which kills git instead of letting it list the rest.

Commit contents are not taken from git's pretty formats: those re-indent and re-encode
messages. Callers read the objects themselves, through cat-file (revlist_objects.py).

Also here: how Gitaly writes dates into these command lines (three different ways,
one per RPC family), and the parsers for `%D` decorations and `--shortstat` lines.
"""

from __future__ import annotations

import datetime
import os
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import GitalyError, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.command import READ_CHUNK_BYTES
from trio_gitaly.git.revision import validate_revision

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from trio_gitaly.git.command import CommandFactory, GitProcess

__all__ = [
    "LOG_RECORD_START",
    "LogRecord",
    "Records",
    "ShortStat",
    "go_time_string",
    "go_timestamp_text",
    "log_format",
    "parse_decorations",
    "parse_log_record",
    "parse_shortstat",
    "rev_list_command",
    "rfc3339_utc",
    "walk",
]

#: A record longer than this is not one of ours (an object id, a line of decorations
#: and a shortstat line): refuse it instead of growing the buffer without bound.
MAX_RECORD_BYTES: Final = 1024 * 1024
#: `log_format` starts every commit with this byte, so records split at it.
LOG_RECORD_START: Final = b"\x00"
# Between the object id and the decorations of a log record.
_DECORATION_SEPARATOR: Final = b"\x01"
# Gitaly's pattern for a --shortstat line; insertions and deletions are left out by git
# when there are none.
_SHORTSTAT_RE: Final = re.compile(
    rb"\s(\d+)\sfiles? changed(,\s(\d+)\sinsertions?\(\+\))?(,\s(\d+)\sdeletions?\(-\))?"
)
_INT32_MAX: Final = 2**31 - 1
# What Go's time.Time.IsZero() is as a Unix time: 0001-01-01T00:00:00Z.
_GO_ZERO_TIME_SECONDS: Final = -62135596800
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class _RevListCommand(GitCommand):
    """A rev-list whose positional arguments may be pseudo-revisions (--not, --all, ...).

    rev-list reads those in order among the revisions, so they cannot be moved into the
    flags. Gitaly's rule for rev-list: an argument starting with a dash must be one of
    the pseudo-revisions `validate_revision(allow_pseudo=True)` accepts; everything else
    is checked as any positional argument.
    """

    def __post_init__(self) -> None:
        # rev-list never gets --end-of-options (args.NO_END_OF_OPTIONS): after it,
        # --not would be a revision name.
        assert self.name == "rev-list"
        plain: list[str] = []
        for arg in tuple(self.args):
            if "\0" in arg:
                # The kernel would end the argument at the NUL: git would see another.
                raise invalid_argument(f"positional argument {arg!r} contains nul")
            if arg.startswith("-"):
                try:
                    validate_revision(os.fsencode(arg), allow_pseudo=True)
                except GitalyError as exc:
                    raise exc.wrap("validating positional argument") from None
            else:
                plain.append(arg)
        checked = GitCommand(
            self.name, self.flags, plain, self.post_sep_args, self.end_of_options, self.action
        )
        object.__setattr__(self, "flags", checked.flags)
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "post_sep_args", checked.post_sep_args)


def rev_list_command(
    flags: Sequence[str], revisions: Sequence[bytes], paths: Sequence[bytes] = ()
) -> GitCommand:
    """`git rev-list <flags> <revisions> [-- <paths>]`, revisions in the order given.

    Raises:
        GitalyError: INVALID_ARGUMENT "validating positional argument: ..." for an
            argument starting with a dash that is not a pseudo-revision, or one with NUL.
    """
    return _RevListCommand(
        "rev-list",
        flags=list(flags),
        args=[os.fsdecode(revision) for revision in revisions],
        post_sep_args=[os.fsdecode(path) for path in paths],
    )


class Records:
    """The output of a running walk, split into records, read on demand.

    After `next` returned None, `returncode` and `stderr` tell how git ended; callers
    decide what a failure means (each RPC maps it to its own error).
    """

    def __init__(self, process: GitProcess, separator: bytes) -> None:
        assert process.stdout is not None
        self._process = process
        self._stdout = process.stdout
        self._separator = separator
        self._buffer = bytearray()
        self._records: list[bytes] = []
        self._next = 0
        self._eof = False
        self.returncode: int | None = None
        self.stderr = b""

    @property
    def ready(self) -> bool:
        """Whether `next` would return without waiting for git."""
        return self._next < len(self._records)

    async def next(self) -> bytes | None:
        """The next record (without its separator), or None after the last one.

        Raises:
            GitalyError: INTERNAL for a record over MAX_RECORD_BYTES.

        Cancellation:
            Safe at any point; the `walk` block kills git when it is left.
        """
        while self._next >= len(self._records):
            if self._eof:
                return None
            await self._fill()
        record = self._records[self._next]
        self._next += 1
        return record

    async def _fill(self) -> None:
        self._records, self._next = [], 0
        chunk = await self._stdout.receive_some(READ_CHUNK_BYTES)
        if not chunk:
            self._eof = True
            if self._buffer:
                self._records.append(bytes(self._buffer))
                self._buffer.clear()
            self.returncode = await self._process.wait()
            self.stderr = self._process.stderr_tail()
            return
        self._buffer += chunk
        end = self._buffer.rfind(self._separator)
        if end < 0:
            if len(self._buffer) > MAX_RECORD_BYTES:
                raise internal("git walk record is too long")
            return
        self._records = bytes(self._buffer[:end]).split(self._separator)
        del self._buffer[: end + len(self._separator)]


@asynccontextmanager
async def walk(
    git: CommandFactory,
    cmd: GitCommand,
    *,
    repo_path: str,
    env: Mapping[str, str] | None = None,
    separator: bytes = b"\n",
) -> AsyncIterator[Records]:
    """Run a rev-list, log or cat-file listing and hand out its output records.

    Args:
        git: the command factory.
        cmd: the command (see `rev_list_command`, `log_format`).
        repo_path: the repository.
        env: extra environment (quarantine directories, GIT_LITERAL_PATHSPECS).
        separator: what ends (or, for `log_format`, starts) each record.

    Yields:
        The records, valid inside this block only.

    Cancellation:
        Leaving the block for any reason kills git and reaps it.
    """
    async with git.spawn(cmd, repo_path=repo_path, env=env) as process:
        yield Records(process, separator)


# -- git log records ---------------------------------------------------------------------


@dataclass(frozen=True)
class ShortStat:
    """One `--shortstat` line: files changed, lines added and deleted."""

    files: int
    additions: int
    deletions: int


@dataclass(frozen=True)
class LogRecord:
    """One commit of a `log_format` walk.

    Attributes:
        oid: the commit id.
        decorations: the `%D` text (empty unless decorations were asked for).
        shortstat: the `--shortstat` line, or None when git printed none (merges,
            commits that change nothing, or shortstat not asked for).
    """

    oid: str
    decorations: bytes
    shortstat: bytes | None


def log_format(*, decorations: bool) -> str:
    """The `--format` for `parse_log_record`: a NUL, the id, and `%D` when asked for."""
    return "--format=%x00%H" + ("%x01%D" if decorations else "")


def parse_log_record(record: bytes) -> LogRecord:
    """Parse one record of a `log_format` walk split at LOG_RECORD_START.

    Raises:
        GitalyError: INTERNAL when the record is not in our format.
    """
    head, _, rest = record.partition(b"\n")
    oid, _, decorations = head.partition(_DECORATION_SEPARATOR)
    if not oid or not all(c in b"0123456789abcdef" for c in oid):
        raise internal("unexpected git log output", record=record[:200])
    stat = rest.strip()
    return LogRecord(oid.decode("ascii"), decorations, stat or None)


def parse_decorations(text: bytes) -> list[bytes]:
    """The reference names in a `%D` (with --decorate=full) text, as Gitaly lists them.

    "tag: " prefixes are dropped, and "HEAD -> refs/heads/main" gives both names.
    """
    names: list[bytes] = []
    for item in text.split(b", "):
        if not item:
            continue
        item = item.removeprefix(b"tag: ")
        left, arrow, right = item.partition(b" -> ")
        names.extend((left, right) if arrow else (item,))
    return names


def parse_shortstat(line: bytes) -> ShortStat:
    """Parse a `--shortstat` line (" 2 files changed, 3 insertions(+), 1 deletion(-)").

    Raises:
        GitalyError: INTERNAL for a line that is not one, or counts beyond int32.
    """
    match = _SHORTSTAT_RE.search(b" " + line)
    if match is None:
        raise internal("unexpected stats format", line=line[:200])
    values = [int(match.group(index) or 0) for index in (1, 3, 5)]
    if any(value > _INT32_MAX for value in values):
        raise internal("stats count out of range", line=line[:200])
    return ShortStat(*values)


# -- dates on command lines --------------------------------------------------------------
#
# Gitaly writes request timestamps three ways, and git's date parser reads each slightly
# differently at the edges (a zero value, fractions), so each family keeps its own.


def go_timestamp_text(seconds: int, nanos: int) -> str:
    """A protobuf Timestamp as Go's `String()` prints it ("seconds:1 nanos:2"; "" for 0).

    FindCommits passes this text to --before/--after; git reads the seconds as a Unix
    time.
    """
    fields = []
    if seconds:
        fields.append(f"seconds:{seconds}")
    if nanos:
        fields.append(f"nanos:{nanos}")
    return " ".join(fields)


def go_time_string(seconds: int, nanos: int) -> str | None:
    """A Timestamp as Go's `time.Time.String()` in UTC, or None for Go's zero time.

    ListCommits passes this ("2002-01-01 01:01:01.000000001 +0000 UTC") to --before and
    --after, and leaves the option out for the zero time.
    """
    if seconds == _GO_ZERO_TIME_SECONDS and nanos == 0:
        return None
    moment = _utc(seconds)
    if moment is None:
        return _git_raw_date(seconds)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + " +0000 UTC"


def rfc3339_utc(seconds: int) -> str:
    """Seconds since the epoch as RFC 3339 in UTC ("2023-11-14T22:13:20Z"), for CountCommits."""
    moment = _utc(seconds)
    if moment is None:
        return _git_raw_date(seconds)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


def _utc(seconds: int) -> datetime.datetime | None:
    try:
        return _EPOCH + datetime.timedelta(seconds=seconds)
    except OverflowError:
        return None


def _git_raw_date(seconds: int) -> str:
    # Years Python cannot represent (Timestamps outside 0001-9999 are invalid anyway):
    # git's own "@<seconds> <zone>" form says the same instant.
    return f"@{seconds} +0000"

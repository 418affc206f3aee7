"""The parser of `git diff --raw --patch` output; see the package docstring for the rules."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from trio_gitaly.git.diff.limits import Limits, max_patch_bytes_for
from trio_gitaly.git.diff.reader import ByteSource, StreamReader

#: Hex digits of an object id, by object format.
OBJECT_HEX_LENGTHS: Final = {"sha1": 40, "sha256": 64}

#: With no limits, patch bytes are handed to `on_patch` once this many are pending.
PATCH_FLUSH_BYTES: Final = 64 * 1024
# How far a line's start is looked at to classify it (the longest prefix is "diff --git").
_PEEK_BYTES: Final = 10
# What a patch line is (DiffParser._classify).
_NEXT_FILE, _HUNK_HEADER, _COUNTED, _BINARY, _SKIPPED = range(5)

_RAW_LINE_RE: Final = {
    fmt: re.compile(
        rb"^:(\d+) (\d+) ([0-9A-Fa-f]{%d}) ([0-9A-Fa-f]{%d}) ([ADTUXMRC]\d*)\t(.*?)(?:\t(.*?))?$"
        % (n, n),
        re.MULTILINE,
    )
    for fmt, n in OBJECT_HEX_LENGTHS.items()
}
# The header's old path is the shortest text after "a/" followed by the new side's " b/":
# a path containing " b/" is cut short there and so misses its raw line, as in Gitaly.
_HEADER_RE: Final = re.compile(rb'^diff --git "?a/(.*?)"? "?b/(.*?)"?$', re.MULTILINE)
_SIMPLE_ESCAPES: Final = {
    ord('"'): ord('"'),
    ord("\\"): ord("\\"),
    ord("/"): ord("/"),
    ord("'"): ord("'"),
    ord("b"): ord("\b"),
    ord("f"): ord("\f"),
    ord("n"): ord("\n"),
    ord("r"): ord("\r"),
    ord("t"): ord("\t"),
}


class DiffParseError(Exception):
    """git's output did not have the expected shape (Gitaly's "parse failure")."""


@dataclass(slots=True)
class Diff:
    """One file of a diff.

    `patch` holds the patch bytes not yet handed to `on_patch`: all of it unless the
    parser streams. `status` is git's status letter (b"T" stays on the deletion half of
    a type change). An overflow marker that ends the diff has every other field empty.
    """

    from_id: str = ""
    to_id: str = ""
    old_mode: int = 0
    new_mode: int = 0
    from_path: bytes = b""
    to_path: bytes = b""
    status: bytes = b""
    binary: bool = False
    overflow_marker: bool = False
    collapsed: bool = False
    too_large: bool = False
    collect_all_paths: bool = False
    line_count: int = 0
    patch: bytes = b""


def unescape(value: bytes) -> bytes:
    """Undo git's C-style path quoting (octal bytes, \\n, \\t, ...), as Gitaly does."""
    if b"\\" not in value:
        return value
    out = bytearray()
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch != 0x5C or i + 1 >= n:  # not a backslash, or a trailing one
            out.append(ch)
            i += 1
            continue
        digits = value[i + 1 : i + 4]
        if i + 3 < n and _is_octal_byte(digits):
            out.append(int(digits, 8))
            i += 4
            continue
        escaped = value[i + 1]
        if escaped in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[escaped])
        else:
            out += bytes((0x5C, escaped))
        i += 2
    return bytes(out)


def _is_octal_byte(digits: bytes) -> bool:
    # Three octal digits worth at most 255; anything else (say "\\400") stays as it is.
    return all(0x30 <= d <= 0x37 for d in digits) and int(digits, 8) < 256


class DiffParser:
    """Parses `git diff --raw --patch` output file by file (Gitaly's diff.Parser).

    Args:
        source: git's stdout.
        object_format: "sha1" or "sha256".
        limits: Gitaly's limits; capped at the upper bounds here.
        on_patch: with no limits on, called with pending patch bytes of the current file
            (whose other fields are final by then) whenever `PATCH_FLUSH_BYTES` are
            pending; the rest comes in the returned `Diff.patch`.
    """

    def __init__(
        self,
        source: ByteSource,
        object_format: str,
        limits: Limits,
        *,
        on_patch: Callable[[Diff, bytes], Awaitable[None]] | None = None,
    ) -> None:
        if object_format not in OBJECT_HEX_LENGTHS:
            raise DiffParseError(
                f"cannot parse raw diff line with unknown object format {object_format!r}"
            )
        self._reader = StreamReader(source)
        self._format = object_format
        self._zero_oid = "0" * OBJECT_HEX_LENGTHS[object_format]
        self._limits = limits.bounded()
        self._on_patch = on_patch if not (limits.enforce_limits or limits.collapse_diffs) else None
        self._raw_lines: deque[bytes] = deque()
        self._started = False
        self._finished = False
        self._next_patch_from: bytes | None = None
        self._files = 0
        self._lines = 0
        self._bytes = 0
        # Past max_* with collect_all_paths: later files are counted but get no patch.
        self._stop_collection = False
        # The current file's patch: its logical length (what Gitaly's len(Patch) would be)
        # and the bytes still held, which are dropped once the patch must end up empty.
        self._diff = Diff()
        self._patch = bytearray()
        self._patch_len = 0
        self._keep_patch = True
        self._file_max_patch_bytes = 0

    async def next_diff(self) -> Diff | None:
        """The next file of the diff, or None when there are no more.

        Raises:
            DiffParseError: git's output is not a raw-plus-patch diff.

        Cancellation:
            Safe; the parser is then unusable.
        """
        if not self._started:
            self._started = True
            await self._cache_raw_lines()
        if self._finished or not self._raw_lines:
            # A diff cut short by a limit still has to be read for git to exit.
            await self._reader.drain()
            return None
        self._start_diff(self._raw_lines.popleft())
        diff = self._diff
        await self._find_next_patch_from()
        if (self._next_patch_from or b"") != diff.from_path:
            return diff  # this file has no patch; the pending header is a later file's
        self._next_patch_from = None
        await self._consume_patch()
        return self._finish_diff()

    async def _cache_raw_lines(self) -> None:
        while True:
            line, complete = await self._reader.read_until()
            # The blank line between raw lines and patches is consumed here.
            if not complete or not line.startswith(b":"):
                return
            self._raw_lines.append(line)

    def _start_diff(self, raw_line: bytes) -> None:
        self._diff = diff = _parse_raw_line(self._format, raw_line)
        self._patch.clear()
        self._patch_len = 0
        self._keep_patch = True
        self._file_max_patch_bytes = self._max_patch_bytes()
        if diff.status == b"T":
            # Shown as a deletion now and an addition next, as GitLab displays it; the
            # addition is a raw line of our own, parsed like git's (Gitaly's rule).
            added = b":%o %o %s %s A\t%s\n" % (
                0,
                diff.new_mode,
                self._zero_oid.encode(),
                diff.to_id.encode(),
                diff.from_path,
            )
            self._raw_lines.appendleft(added)
            diff.new_mode = 0
            diff.to_id = self._zero_oid
        self._files += 1

    async def _find_next_patch_from(self) -> None:
        if self._next_patch_from is not None:
            return
        line, complete = await self._reader.read_until()
        if not complete:
            return  # EOF: no more patches
        match = _HEADER_RE.search(line)
        if match is None:
            raise DiffParseError("diff header regexp mismatch")
        self._next_patch_from = unescape(match.group(1))

    def _classify(self, head: bytes) -> int:
        # Gitaly's checks on a line's first bytes; they never overlap on the first byte,
        # so it picks the one check that can apply.
        first = head[:1]
        if first in (b"+", b"-"):
            if self._patch_len == 0 and head.startswith((b"+++", b"---")):
                return _SKIPPED  # the file header, before any hunk
            return _COUNTED
        if first in (b" ", b"\\"):
            return _COUNTED
        if first == b"@":
            return _HUNK_HEADER if head.startswith(b"@@") else _SKIPPED
        if first == b"d" and head.startswith(b"diff --git"):
            return _NEXT_FILE
        if first == b"~" and head.startswith(b"~\n"):
            return _COUNTED  # word-diff newline; other "~" lines are dropped
        if first == b"B" and head.startswith(b"Binary"):
            return _BINARY
        return _SKIPPED  # extended headers: index, mode, rename, ...

    async def _consume_patch(self) -> None:
        reader = self._reader
        while True:
            line = reader.buffered_line()
            if line is not None:
                # Fast path: a whole line in the buffer, handled without awaiting.
                kind = self._classify(line)
                if kind == _NEXT_FILE:
                    return
                reader.skip(len(line))
                if kind == _SKIPPED:
                    continue
                if kind == _BINARY:
                    self._diff.binary = True
                counted = kind != _HUNK_HEADER
                if self._take(line, len(line), counted):
                    await self._flush()
                self._count(len(line), counted)
                continue
            head = await reader.peek(_PEEK_BYTES)
            if not head:
                return
            kind = self._classify(head)
            if kind == _NEXT_FILE:
                return
            if kind == _SKIPPED:
                await reader.skip_line()
                continue
            if kind == _BINARY:
                self._diff.binary = True
            await self._chunk_line(counted=kind != _HUNK_HEADER)

    async def _chunk_line(self, *, counted: bool) -> None:
        # A line longer than the buffer, taken piece by piece so that a dropped or
        # streamed patch never holds it whole.
        size = 0
        done = False
        while not done:
            piece, done = await self._reader.read_piece()
            size += len(piece)
            if self._take(piece, size, counted):
                await self._flush()
        self._count(size, counted)

    def _take(self, piece: bytes, size: int, counted: bool) -> bool:
        """Add a piece of a patch line (`size` bytes of it so far); True when pending
        bytes are due for `on_patch`."""
        if self._stop_collection:
            return False
        self._patch_len += len(piece)
        if not self._keep_patch:
            return False
        self._patch += piece
        if self._on_patch is not None:
            return len(self._patch) >= PATCH_FLUSH_BYTES
        if self._will_be_emptied(size if counted else 0, 1 if counted else 0):
            self._keep_patch = False
            self._patch.clear()
        return False

    async def _flush(self) -> None:
        assert self._on_patch is not None
        data = bytes(self._patch)
        self._patch.clear()
        await self._on_patch(self._diff, data)

    def _count(self, size: int, counted: bool) -> None:
        if counted:
            self._bytes += size
            self._diff.line_count += 1
            self._lines += 1

    def _will_be_emptied(self, extra_bytes: int, extra_lines: int) -> bool:
        # Both conditions only grow true within a file, so the patch's fate is sealed.
        limits = self._limits
        if limits.enforce_limits and self._patch_len >= self._file_max_patch_bytes:
            return True
        return (
            limits.collapse_diffs
            and self._diff.line_count + extra_lines > 0
            and self._over_safe_limits(extra_bytes, extra_lines)
        )

    def _over_safe_limits(self, extra_bytes: int = 0, extra_lines: int = 0) -> bool:
        limits = self._limits
        return (
            self._files > limits.safe_max_files
            or self._lines + extra_lines > limits.safe_max_lines
            or self._bytes + extra_bytes > limits.safe_max_bytes
        )

    def _max_patch_bytes(self) -> int:
        limits = self._limits
        return max_patch_bytes_for(
            limits.max_patch_bytes, limits.max_patch_bytes_for_file_extension, self._diff.to_path
        )

    def _prune_patch(self) -> None:
        # Gitaly takes the patch back out of the totals, hunk headers included (they were
        # never counted in): the byte total can drift below the bytes counted.
        self._lines -= self._diff.line_count
        self._bytes -= self._patch_len
        self._clear_patch()

    def _clear_patch(self) -> None:
        self._patch.clear()
        self._patch_len = 0

    def _finish_diff(self) -> Diff:
        diff = self._diff
        limits = self._limits
        if limits.collapse_diffs and self._over_safe_limits() and diff.line_count > 0:
            self._prune_patch()
            diff.collapsed = True
            if limits.collect_all_paths:
                diff.collect_all_paths = True
        if limits.enforce_limits:
            if self._patch_len >= self._file_max_patch_bytes:
                self._prune_patch()
                diff.too_large = True
            if (
                self._files > limits.max_files
                or self._lines >= limits.max_lines
                or self._bytes >= limits.max_bytes
            ):
                if limits.collect_all_paths:
                    diff.collect_all_paths = True
                    self._clear_patch()
                    self._stop_collection = True
                else:
                    self._finished = True
                    self._clear_patch()
                    diff = self._diff = Diff()
                diff.overflow_marker = True
        diff.patch = bytes(self._patch)
        self._patch.clear()
        return diff


def _parse_raw_line(object_format: str, line: bytes) -> Diff:
    match = _RAW_LINE_RE[object_format].search(line)
    if match is None:
        raise DiffParseError("raw line regexp mismatch")
    old_mode, new_mode, from_id, to_id, status, from_path, to_path = match.groups()
    diff = Diff(
        old_mode=_mode(old_mode, "old"),
        new_mode=_mode(new_mode, "new"),
        from_id=from_id.decode(),
        to_id=to_id.decode(),
        status=status[:1],
        from_path=unescape(_unquote(from_path)),
    )
    if diff.status in (b"C", b"R"):
        diff.to_path = unescape(_unquote(to_path or b""))
    else:
        diff.to_path = diff.from_path
    return diff


def _mode(digits: bytes, side: str) -> int:
    try:
        return int(digits, 8)
    except ValueError:
        raise DiffParseError(f"raw {side} mode: invalid syntax") from None


def _unquote(value: bytes) -> bytes:
    if len(value) >= 2 and value[:1] == b'"' and value[-1:] == b'"':
        return value[1:-1]
    return value

"""Commit message trailers ("Signed-off-by: ..."), found as git finds them.

Gitaly asks git for trailers (`%(trailers:unfold,separator=%x00)`); we parse the message
ourselves with git's algorithm (trailer.c in git 2.36-2.39, with no `trailer.*` config,
since the server runs git without global config) so that no process is needed per commit.
tests/git/test_objects.py checks it against `git interpret-trailers --parse`.
"""

from __future__ import annotations

import string
from typing import Final

__all__ = ["MAX_KEY_BYTES", "MAX_TRAILERS", "MAX_VALUE_BYTES", "commit_trailers", "trailers"]

#: Gitaly's limits (internal/git/trailerparser): parsing stops at the first trailer over
#: a limit, so a huge message cannot make a huge response.
MAX_TRAILERS: Final = 64
MAX_KEY_BYTES: Final = 128
MAX_VALUE_BYTES: Final = 512

# git's isspace(): its own ctype table has only these four (no \v or \f).
_SPACE: Final = b" \t\n\r"
# Lines git itself writes into trailer blocks: one of them makes a mixed block count.
_GIT_GENERATED_PREFIXES: Final = (b"Signed-off-by: ", b"(cherry picked from commit ")
_COMMENT: Final = ord("#")
# git's isalnum() is ASCII-only; a token is alphanumerics and dashes.
_TOKEN_CHARS: Final = frozenset(string.ascii_letters.encode() + string.digits.encode() + b"-")
_SCISSORS: Final = b"\n# ------------------------ >8 ------------------------\n"


def trailers(message: bytes) -> list[tuple[bytes, bytes]]:
    """The trailers of `message` as (token, value) pairs, unfolded and trimmed.

    What `git interpret-trailers --parse` prints, split at its ": ".
    """
    # git works on C strings: a NUL ends the message.
    message = message.partition(b"\0")[0]
    end = _trailer_end(message, _patch_start(message))
    start = _trailer_start(message, end)
    result: list[tuple[bytes, bytes]] = []
    for line in _block_lines(message[start:end]):
        if line[:1] == b"#":
            continue
        separator = _find_separator(line)
        if separator >= 1:
            token = line[:separator].strip(_SPACE)
            result.append((token, _unfold(line[separator + 1 :].strip(_SPACE))))
    return result


def commit_trailers(message: bytes) -> list[tuple[bytes, bytes]]:
    """`trailers` within Gitaly's limits: what its RPCs report for a commit."""
    result: list[tuple[bytes, bytes]] = []
    for token, value in trailers(message)[:MAX_TRAILERS]:
        if len(token) > MAX_KEY_BYTES or len(value) > MAX_VALUE_BYTES:
            break
        result.append((token, value))
    return result


def _block_lines(block: bytes) -> list[bytes]:
    """Lines of the trailer block, continuation lines (leading space) joined on."""
    lines: list[bytes] = []
    joinable = False
    pos = 0
    # Split at "\n" only: bytes.splitlines would also split at "\r" and friends.
    while pos < len(block):
        line = block[pos : _next_line(block, pos)]
        pos += len(line)
        if joinable and line[:1] and line[0] in _SPACE:
            lines[-1] += line
            continue
        lines.append(line)
        joinable = _find_separator(line) >= 1
    return lines


def _find_separator(line: bytes) -> int:
    """Index of the ":" ending a token ("Token:", "Token :"), or -1 (git's rule)."""
    whitespace_found = False
    for index, char in enumerate(line):
        if char == ord(":"):
            return index
        if not whitespace_found and char in _TOKEN_CHARS:
            continue
        if index != 0 and char in b" \t":
            whitespace_found = True
            continue
        break
    return -1


def _unfold(value: bytes) -> bytes:
    out = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        index += 1
        if char == ord("\n"):
            # A continuation collapses to one space.
            while index < len(value) and value[index] in _SPACE:
                index += 1
            out += b" "
        else:
            out.append(char)
    return bytes(out).strip(_SPACE)


def _patch_start(message: bytes) -> int:
    """Where a "---" divider line starts (a patch in a format-patch mail), or the end."""
    pos = 0
    while pos < len(message):
        if message.startswith(b"---", pos) and message[pos + 3 : pos + 4] in (
            b" ",
            b"\t",
            b"\n",
            b"\r",
        ):
            return pos
        pos = _next_line(message, pos)
    return len(message)


def _trailer_end(message: bytes, length: int) -> int:
    """The end of the message less trailing comments, blank lines and a scissors part."""
    cutoff = _scissors(message, length)
    start_of_comments = 0
    in_conflicts = False
    pos = 0
    while pos < cutoff:
        first = message[pos]
        if first in (_COMMENT, ord("\n")):
            start_of_comments = start_of_comments or pos
        elif message.startswith(b"Conflicts:\n", pos):
            # The conflicts list old git versions added to merge messages.
            in_conflicts = True
            start_of_comments = start_of_comments or pos
        elif in_conflicts and first == ord("\t"):
            pass
        elif start_of_comments:
            start_of_comments = 0
            in_conflicts = False
        pos = _next_line(message, pos, length)
    return start_of_comments if start_of_comments else cutoff


def _scissors(message: bytes, length: int) -> int:
    if message[:length].startswith(_SCISSORS[1:]):
        return 0
    found = message[:length].find(_SCISSORS)
    return length if found < 0 else found + 1


def _trailer_start(message: bytes, length: int) -> int:
    """Start of the trailer block: the last paragraph if it is all trailers, or has a
    git-generated one and at least a quarter trailers; `length` when there is none."""
    # The first paragraph is the title and never trailers.
    pos = 0
    while pos < length:
        if message[pos] != _COMMENT and _is_blank(message, pos):
            break
        pos = _next_line(message, pos)
    end_of_title = pos
    only_spaces = True
    recognized_prefix = False
    trailer_lines = non_trailer_lines = possible_continuations = 0
    line = _last_line(message, length)
    while line >= end_of_title:
        first = message[line] if line < len(message) else 0
        if first == _COMMENT:
            non_trailer_lines += possible_continuations
            possible_continuations = 0
        elif _is_blank(message, line):
            if not only_spaces:
                non_trailer_lines += possible_continuations
                if (recognized_prefix and trailer_lines * 3 >= non_trailer_lines) or (
                    trailer_lines and not non_trailer_lines
                ):
                    return _next_line(message, line)
                return length
        else:
            only_spaces = False
            text = message[line : _next_line(message, line)]
            if text.startswith(_GIT_GENERATED_PREFIXES):
                trailer_lines += 1
                possible_continuations = 0
                recognized_prefix = True
            elif _find_separator(text) >= 1 and first not in _SPACE:
                trailer_lines += 1
                possible_continuations = 0
            elif first in _SPACE:
                possible_continuations += 1
            else:
                non_trailer_lines += 1 + possible_continuations
                possible_continuations = 0
        line = _last_line(message, line)
    return length


def _is_blank(message: bytes, pos: int) -> bool:
    while pos < len(message) and message[pos] != ord("\n") and message[pos] in _SPACE:
        pos += 1
    return pos >= len(message) or message[pos] == ord("\n")


def _next_line(message: bytes, pos: int, limit: int | None = None) -> int:
    end = message.find(b"\n", pos, len(message) if limit is None else limit)
    return (len(message) if limit is None else limit) if end < 0 else end + 1


def _last_line(message: bytes, length: int) -> int:
    """Start of the line before offset `length` (git's last_line); -1 for none."""
    if length == 0:
        return -1
    if length == 1:
        return 0
    return message.rfind(b"\n", 0, length - 1) + 1

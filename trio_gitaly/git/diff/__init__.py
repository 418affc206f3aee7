"""A streaming parser of `git diff --raw --patch` output with Gitaly's limits and collapsing.

git prints every file's raw line (`:100644 100644 <old> <new> M<TAB>path`) first, then a blank
line, then the patches in the same order. A file may have a raw line but no patch (a pure
mode change or rename, a whitespace-only change under `--ignore-space-change`), so each
patch header is matched against the next raw line's old path before it is consumed.

The rules are those of Gitaly's diff parser (internal/gitaly/diff): what counts as a line
and a byte, when a patch is collapsed (`safe_max_*`), pruned as too large
(`max_patch_bytes`, per file extension) or replaced by an overflow marker (`max_*`), how a
type change becomes a deletion plus an addition, and how quoted paths are unescaped.
Gitaly's quirks are kept, since clients compare answers with Gitaly's: "\\a" and "\\v" in
a quoted path stay a backslash and a letter, and a path containing " b/" is matched to no
patch, which leaves every later file of the diff without one.

Memory stays bounded while limits are on: once a patch is certain to be emptied its bytes
are dropped and only counted. With no limits at all nothing can be emptied, and patch
bytes are handed out as they arrive (`on_patch`).

Modules: limits.py (the limits and their bounds), reader.py (buffered reads from git),
parser.py (the parser).
"""

from __future__ import annotations

from trio_gitaly.git.diff.limits import (
    MAX_BYTES_UPPER_BOUND,
    MAX_FILES_UPPER_BOUND,
    MAX_LINES_UPPER_BOUND,
    MAX_PATCH_BYTES_UPPER_BOUND,
    SAFE_MAX_BYTES_UPPER_BOUND,
    SAFE_MAX_FILES_UPPER_BOUND,
    SAFE_MAX_LINES_UPPER_BOUND,
    Limits,
    max_patch_bytes_for,
)
from trio_gitaly.git.diff.parser import (
    OBJECT_HEX_LENGTHS,
    PATCH_FLUSH_BYTES,
    Diff,
    DiffParseError,
    DiffParser,
    unescape,
)
from trio_gitaly.git.diff.reader import ByteSource, StreamReader

__all__ = [
    "MAX_BYTES_UPPER_BOUND",
    "MAX_FILES_UPPER_BOUND",
    "MAX_LINES_UPPER_BOUND",
    "MAX_PATCH_BYTES_UPPER_BOUND",
    "OBJECT_HEX_LENGTHS",
    "PATCH_FLUSH_BYTES",
    "SAFE_MAX_BYTES_UPPER_BOUND",
    "SAFE_MAX_FILES_UPPER_BOUND",
    "SAFE_MAX_LINES_UPPER_BOUND",
    "ByteSource",
    "Diff",
    "DiffParseError",
    "DiffParser",
    "Limits",
    "StreamReader",
    "max_patch_bytes_for",
    "unescape",
]

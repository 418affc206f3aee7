"""Git LFS pointer files, recognised exactly as Gitaly recognises them.

A pointer is the small text blob git-lfs commits in place of a large file
(https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md):

    version https://git-lfs.github.com/spec/v1
    oid sha256:<64 lower-case hex digits>
    size <decimal bytes>

Gitaly's test is looser than the spec, and clients depend on what it accepts, so this is
Gitaly's test and not the spec's: the blob must *start* with
"version https://git-lfs.github.com/spec" (any version suffix, the pre-release "hawser"
URL is not accepted), and must contain, each on a line of its own and anywhere in the
blob, an "oid sha256:<hex>" line and a "size <digits>" line whose number fits an int64.
Lines end with "\\n" only; a "\\r" before it spoils the line. Key order, other keys and
trailing blank lines do not matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

#: Blobs larger than this many bytes are never taken for pointers (Gitaly's heuristic;
#: a spec-conforming pointer with a few extension keys stays well below it). Listing
#: by graph walk asks git for blobs *smaller* than this (`--filter=blob:limit`), the
#: other listings keep blobs up to and including it, as Gitaly does.
LFS_POINTER_MAX_BYTES: Final = 200

_VERSION_PREFIX: Final = b"version https://git-lfs.github.com/spec"
# Multi-line anchors: `^` after any "\n", `$` before any "\n" or at the end (as in Go).
_OID_RE: Final = re.compile(rb"^oid sha256:([0-9a-f]{64})$", re.MULTILINE)
_SIZE_RE: Final = re.compile(rb"^size ([0-9]+)$", re.MULTILINE)
# The size is parsed as a signed 64-bit integer; a larger number is no pointer.
_INT64_MAX: Final = 2**63 - 1


@dataclass(frozen=True)
class LFSPointerInfo:
    """What a pointer says about the file it stands for.

    Attributes:
        file_oid: the file's SHA-256, 64 lower-case hex digits (ASCII bytes).
        file_size: the file's size in bytes.
    """

    file_oid: bytes
    file_size: int


def parse_lfs_pointer(data: bytes) -> LFSPointerInfo | None:
    """The pointer in `data`, or None when Gitaly would not call it an LFS pointer.

    `data` is the whole blob; callers skip blobs over `LFS_POINTER_MAX_BYTES` before
    reading them, this function itself applies no size limit.
    """
    if not data.startswith(_VERSION_PREFIX):
        return None
    oid = _OID_RE.search(data)
    if oid is None:
        return None
    size = _SIZE_RE.search(data)
    if size is None:
        return None
    file_size = int(size.group(1))
    if file_size > _INT64_MAX:
        return None
    return LFSPointerInfo(file_oid=oid.group(1), file_size=file_size)

"""Gitaly's diff limits: when a diff stops, and when a patch is emptied, and the bounds no
request can raise them past."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

# Gitaly's upper bounds: whatever a client asks for, no limit goes above these.
MAX_FILES_UPPER_BOUND: Final = 5000
MAX_LINES_UPPER_BOUND: Final = 250_000
MAX_BYTES_UPPER_BOUND: Final = 5000 * 5120  # ~24 MiB
SAFE_MAX_FILES_UPPER_BOUND: Final = 500
SAFE_MAX_LINES_UPPER_BOUND: Final = 25_000
SAFE_MAX_BYTES_UPPER_BOUND: Final = 500 * 5120  # ~2.4 MiB
MAX_PATCH_BYTES_UPPER_BOUND: Final = 512_000  # 500 KiB


@dataclass(frozen=True)
class Limits:
    """When parsing stops or patches are emptied; Gitaly's `diff.Limits`.

    Attributes:
        enforce_limits: `max_files`/`max_lines`/`max_bytes` end the diff with an overflow
            marker, and `max_patch_bytes` empties single patches (`too_large`).
        collapse_diffs: once past any `safe_max_*`, patches are emptied (`collapsed`).
        collect_all_paths: past `max_*`, keep reporting files (without patches) instead
            of ending the diff.
        max_files, max_lines, max_bytes, safe_max_files, safe_max_lines, safe_max_bytes:
            counts over the whole diff; lines and bytes count patch lines (not hunk
            headers).
        max_patch_bytes: size at which a single patch is emptied.
        max_patch_bytes_for_file_extension: per extension (".txt"), or per file name for
            names without one ("Dockerfile"); overrides `max_patch_bytes`.
    """

    enforce_limits: bool = False
    collapse_diffs: bool = False
    collect_all_paths: bool = False
    max_files: int = 0
    max_lines: int = 0
    max_bytes: int = 0
    safe_max_files: int = 0
    safe_max_lines: int = 0
    safe_max_bytes: int = 0
    max_patch_bytes: int = 0
    max_patch_bytes_for_file_extension: dict[str, int] = field(default_factory=dict)

    def bounded(self) -> Limits:
        """These limits with each capped at Gitaly's upper bound."""
        return Limits(
            enforce_limits=self.enforce_limits,
            collapse_diffs=self.collapse_diffs,
            collect_all_paths=self.collect_all_paths,
            max_files=min(self.max_files, MAX_FILES_UPPER_BOUND),
            max_lines=min(self.max_lines, MAX_LINES_UPPER_BOUND),
            max_bytes=min(self.max_bytes, MAX_BYTES_UPPER_BOUND),
            safe_max_files=min(self.safe_max_files, SAFE_MAX_FILES_UPPER_BOUND),
            safe_max_lines=min(self.safe_max_lines, SAFE_MAX_LINES_UPPER_BOUND),
            safe_max_bytes=min(self.safe_max_bytes, SAFE_MAX_BYTES_UPPER_BOUND),
            max_patch_bytes=min(self.max_patch_bytes, MAX_PATCH_BYTES_UPPER_BOUND),
            max_patch_bytes_for_file_extension=dict(self.max_patch_bytes_for_file_extension),
        )


def max_patch_bytes_for(max_patch_bytes: int, per_extension: dict[str, int], to_path: bytes) -> int:
    """The patch size limit of the file at `to_path`: its extension's (or, without one,
    its name's) entry in `per_extension`, else `max_patch_bytes`."""
    if not per_extension:
        return max_patch_bytes
    name = _base_name(to_path)
    dot = name.rfind(b".")
    key = name[dot:] if dot >= 0 else name
    for extension, limit in per_extension.items():
        if extension.encode() == key:
            return limit
    return max_patch_bytes


def _base_name(path: bytes) -> bytes:
    # The last element as Go's filepath.Base gives it: "." for an empty path.
    if not path:
        return b"."
    stripped = path.rstrip(b"/")
    if not stripped:
        return b"/"
    return stripped.rpartition(b"/")[2]

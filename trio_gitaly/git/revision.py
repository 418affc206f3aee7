"""Validation of what clients name git things with: revisions, reference names, paths.

These run before anything reaches git, so a client can never smuggle an option into a
command line (a revision starting with "-") or confuse a parser (NUL, newlines). The
rules and messages are Gitaly's; every failure is INVALID_ARGUMENT.
"""

from __future__ import annotations

import re

from trio_gitaly.errors import GitalyError, StatusCode

# git rev-list's pseudo-revisions a caller may opt into (Gitaly's list).
PSEUDO_REVISIONS = frozenset({b"--all", b"--not", b"--branches", b"--tags", b"--alternate-refs"})
PSEUDO_REVISION_PREFIXES = (b"--branches=", b"--tags=", b"--glob=")

# check-ref-format's forbidden characters: control characters, DEL, space and ~^:?*[\
_REF_FORBIDDEN = re.compile(rb"[\x00-\x20\x7f~^:?*\[\\]")


def _invalid(message: str) -> GitalyError:
    return GitalyError(StatusCode.INVALID_ARGUMENT, message)


def validate_revision(
    revision: bytes | str,
    *,
    allow_empty: bool = False,
    allow_path_scoped: bool = False,
    allow_pseudo: bool = False,
) -> bytes:
    """Check a revision as Gitaly does; return it as bytes.

    Args:
        allow_empty: accept b"" (callers that default it, e.g. to HEAD).
        allow_path_scoped: accept "rev:path" (only the revision part is checked).
        allow_pseudo: accept --all, --not, --branches[=], --tags[=], --glob=, ...
    """
    value = revision.encode() if isinstance(revision, str) else revision
    if allow_pseudo and (value in PSEUDO_REVISIONS or value.startswith(PSEUDO_REVISION_PREFIXES)):
        return value
    if value.startswith(b"-"):
        raise _invalid("revision can't start with '-'")
    if b"\x00" in value:
        raise _invalid("revision can't contain NUL")
    checked = value.partition(b":")[0] if allow_path_scoped else value
    if not allow_empty and not checked:
        raise _invalid("empty revision")
    if any(ch in checked for ch in (b" ", b"\t", b"\n", b"\r")):
        raise _invalid("revision can't contain whitespace")
    if b":" in checked:
        raise _invalid("revision can't contain ':'")
    if b"\\" in checked:
        raise _invalid("revision can't contain '\\'")
    return value


def is_valid_ref_name(name: bytes) -> bool:
    """Whether `name` is a full reference name git would accept (check-ref-format)."""
    if not name.startswith(b"refs/") or name == b"refs/" or name.endswith((b"/", b".")):
        return False
    if b"@{" in name or b".." in name or name == b"@" or _REF_FORBIDDEN.search(name):
        return False
    return all(
        component and not component.startswith(b".") and not component.endswith(b".lock")
        for component in name.split(b"/")
    )


def validate_ref_name(name: bytes | str) -> bytes:
    """A full reference name ("refs/heads/main"); INVALID_ARGUMENT when git would refuse it."""
    value = name.encode() if isinstance(name, str) else name
    if not is_valid_ref_name(value):
        raise _invalid(f"invalid reference name: {value.decode('utf-8', 'replace')!r}")
    return value


def validate_path(path: bytes | str, *, allow_empty: bool = False) -> bytes:
    """A path inside a tree, as a client names it: no NUL, not absolute, no escaping."""
    value = path.encode() if isinstance(path, str) else path
    if not value and not allow_empty:
        raise _invalid("empty path")
    if b"\x00" in value:
        raise _invalid("path can't contain NUL")
    return value

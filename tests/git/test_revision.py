"""Revision, reference-name and path validation: Gitaly's rules, and git's own verdict."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.revision import (
    is_valid_ref_name,
    validate_path,
    validate_revision,
)

REJECTED = [
    ("option", b"--output=/tmp/x", {}, "revision can't start with '-'"),
    ("nul", b"main\x00", {}, "revision can't contain NUL"),
    ("empty", b"", {}, "empty revision"),
    ("space", b"main foo", {}, "revision can't contain whitespace"),
    ("newline", b"main\nHEAD", {}, "revision can't contain whitespace"),
    ("colon", b"main:README", {}, "revision can't contain ':'"),
    ("backslash", b"main\\x", {}, "revision can't contain '\\'"),
    ("pseudo not allowed", b"--all", {}, "revision can't start with '-'"),
    ("path scoped: empty revision", b":README", {"allow_path_scoped": True}, "empty revision"),
]


@pytest.mark.parametrize(
    ("revision", "options", "message"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED]
)
def test_rejected_revisions(revision: bytes, options: dict[str, bool], message: str) -> None:
    with pytest.raises(GitalyError) as info:
        validate_revision(revision, **options)
    assert (info.value.code, info.value.message) == (StatusCode.INVALID_ARGUMENT, message)


@pytest.mark.parametrize(
    ("revision", "options"),
    [
        (b"main", {}),
        (b"HEAD~2^{tree}", {}),
        (b"refs/tags/v1.0", {}),
        (b"main:dir with space/file", {"allow_path_scoped": True}),
        (b"", {"allow_empty": True}),
        (b"--all", {"allow_pseudo": True}),
        (b"--glob=refs/heads/*", {"allow_pseudo": True}),
        (b"a" * 40 + b"..main", {}),
    ],
)
def test_accepted_revisions(revision: bytes, options: dict[str, bool]) -> None:
    assert validate_revision(revision, **options) == revision


@given(st.binary(max_size=40))
def test_ref_names_agree_with_git_check_ref_format(name: bytes) -> None:
    candidate = b"refs/heads/" + name
    if b"\x00" in candidate:
        assert not is_valid_ref_name(candidate)
        return
    result = subprocess.run(["git", "check-ref-format", candidate], capture_output=True)
    assert is_valid_ref_name(candidate) == (result.returncode == 0), candidate


def test_paths() -> None:
    assert validate_path(b"dir/file") == b"dir/file"
    assert validate_path(b"", allow_empty=True) == b""
    for bad in (b"", b"a\x00b"):
        with pytest.raises(GitalyError):
            validate_path(bad)

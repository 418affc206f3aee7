"""Locator: Gitaly's repository-path rules, codes and messages, on a real filesystem."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.storage.locator import Locator, RepositoryLike, Storage

if TYPE_CHECKING:
    from pathlib import Path

INVALID = StatusCode.INVALID_ARGUMENT


@dataclass(frozen=True)
class Repo:
    storage_name: str
    relative_path: str


@pytest.fixture
def root(tmp_path: Path) -> Path:
    storage = tmp_path / "storage"
    storage.mkdir()
    # A sibling whose name extends the root's: "storage-evil" starts with "storage", so a
    # containment check without the trailing "/" would let "../storage-evil/x" through.
    (tmp_path / "storage-evil").mkdir()
    return storage


@pytest.fixture
def locator(root: Path, tmp_path: Path) -> Locator:
    return Locator(
        [
            Storage("default", str(root)),
            Storage("missing", str(tmp_path / "not-on-disk")),
        ]
    )


def git_init_bare(path: Path) -> Path:
    subprocess.run(["git", "init", "--bare", "--quiet", str(path)], check=True)
    return path


def expect_error(
    locator: Locator, repo: RepositoryLike | None, code: StatusCode, message: str, **kw: bool
) -> GitalyError:
    with pytest.raises(GitalyError) as info:
        locator.repo_path(repo, **kw)
    assert (info.value.code, info.value.message) == (code, message)
    return info.value


# Rules that hold whether or not the repository must exist: (repo, code, message).
VALIDATION_CASES = [
    pytest.param(None, INVALID, "repository not set", id="repo-none"),
    pytest.param(Repo("", ""), INVALID, "repository not set", id="both-empty"),
    pytest.param(Repo("default", ""), INVALID, "repository path not set", id="path-empty"),
    pytest.param(Repo("", "a.git"), INVALID, "storage name not set", id="storage-empty"),
    pytest.param(Repo("nope", "a.git"), INVALID, "storage name not found", id="storage-unknown"),
    pytest.param(
        Repo("missing", "a.git"),
        StatusCode.NOT_FOUND,
        "storage does not exist",
        id="storage-dir-missing",
    ),
    pytest.param(
        Repo("default", "../x"), INVALID, "relative path escapes root directory", id="dotdot"
    ),
    pytest.param(
        Repo("default", "a/../../x"),
        INVALID,
        "relative path escapes root directory",
        id="dotdot-nested",
    ),
    pytest.param(
        Repo("default", "../storage-evil/x"),
        INVALID,
        "relative path escapes root directory",
        id="sibling-prefix",
    ),
    pytest.param(
        Repo("default", "/../../etc"),
        INVALID,
        "relative path escapes root directory",
        id="absolute-dotdot",
    ),
    pytest.param(
        Repo("default", "."), INVALID, "relative path refers to the storage root", id="dot"
    ),
    pytest.param(
        Repo("default", "a/.."),
        INVALID,
        "relative path refers to the storage root",
        id="dotdot-to-root",
    ),
    pytest.param(
        Repo("default", "/"), INVALID, "relative path refers to the storage root", id="slash"
    ),
    pytest.param(
        Repo("default", "+gitaly"),
        INVALID,
        "relative path refers to an internal directory",
        id="internal",
    ),
    pytest.param(
        Repo("default", "+gitaly/tmp"),
        INVALID,
        "relative path refers to an internal directory",
        id="internal-tmp",
    ),
    pytest.param(
        Repo("default", "x/../+gitaly/tmp/q.git"),
        INVALID,
        "relative path refers to an internal directory",
        id="internal-via-dotdot",
    ),
    pytest.param(
        Repo("default", "/+gitaly/cache"),
        INVALID,
        "relative path refers to an internal directory",
        id="internal-absolute",
    ),
    pytest.param(
        Repo("default", "a\0b.git"), INVALID, "relative path contains a NUL byte", id="nul"
    ),
]


@pytest.mark.parametrize(("repo", "code", "message"), VALIDATION_CASES)
@pytest.mark.parametrize("must_exist", [True, False], ids=["must-exist", "may-be-absent"])
def test_validation_errors(
    locator: Locator,
    repo: RepositoryLike | None,
    code: StatusCode,
    message: str,
    must_exist: bool,
) -> None:
    expect_error(locator, repo, code, message, must_exist=must_exist)


def test_error_metadata_names_what_failed(locator: Locator, root: Path) -> None:
    err = expect_error(locator, Repo("nope", "a.git"), INVALID, "storage name not found")
    assert err.metadata == {"storage_name": "nope"}
    err = expect_error(
        locator, Repo("default", "../x"), INVALID, "relative path escapes root directory"
    )
    assert err.metadata == {"relative_path": "../x"}
    err = expect_error(
        locator, Repo("default", "gone.git"), StatusCode.NOT_FOUND, "repository not found"
    )
    assert err.metadata == {"storage_name": "default", "relative_path": "gone.git"}


@pytest.mark.parametrize(
    ("relative_path", "expected"),
    [
        pytest.param("a.git", "a.git", id="plain"),
        pytest.param("group/sub/a.git", "group/sub/a.git", id="nested"),
        pytest.param("a//b/./c.git", "a/b/c.git", id="cleaned"),
        pytest.param("x/../a.git", "a.git", id="dotdot-inside"),
        pytest.param("a.git/", "a.git", id="trailing-slash"),
        # Go's filepath.Join keeps an absolute second element under the first (Python's
        # os.path.join would not); Gitaly therefore maps "/etc" to "<storage>/etc".
        pytest.param("/etc", "etc", id="absolute-joined-under-root"),
        pytest.param("//a.git", "a.git", id="double-slash"),
        # Only the exact component "+gitaly" is reserved.
        pytest.param("+gitalyx/a.git", "+gitalyx/a.git", id="internal-lookalike"),
        pytest.param("a/+gitaly/b.git", "a/+gitaly/b.git", id="internal-name-deeper"),
    ],
)
def test_paths_resolve_under_root_when_absence_allowed(
    locator: Locator, root: Path, relative_path: str, expected: str
) -> None:
    path = locator.repo_path(Repo("default", relative_path), must_exist=False)
    assert path == f"{root}/{expected}"


def test_real_bare_repository_validates(locator: Locator, root: Path) -> None:
    git_init_bare(root / "group" / "repo.git")
    repo = Repo("default", "group/repo.git")
    assert locator.repo_path(repo) == f"{root}/group/repo.git"
    assert locator.repo_path(repo, must_exist=False) == f"{root}/group/repo.git"
    locator.validate_repo_dir(f"{root}/group/repo.git")


@pytest.mark.parametrize(
    ("removed", "named"),
    [
        pytest.param(("objects",), "objects", id="objects"),
        pytest.param(("refs",), "refs", id="refs"),
        pytest.param(("HEAD",), "HEAD", id="HEAD"),
        # Gitaly checks objects, refs, HEAD in that order and names the first missing.
        pytest.param(("refs", "HEAD"), "refs", id="refs-before-HEAD"),
        pytest.param(("objects", "refs", "HEAD"), "objects", id="all"),
    ],
)
def test_incomplete_git_dir_is_failed_precondition(
    locator: Locator, root: Path, removed: tuple[str, ...], named: str
) -> None:
    repo_dir = git_init_bare(root / "broken.git")
    for entry in removed:
        target = repo_dir / entry
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    message = f'repository not valid: "{named}" does not exist'
    err = expect_error(
        locator, Repo("default", "broken.git"), StatusCode.FAILED_PRECONDITION, message
    )
    assert err.metadata == {"repository_path": str(repo_dir)}
    with pytest.raises(GitalyError) as info:
        locator.validate_repo_dir(str(repo_dir))
    assert (info.value.code, info.value.message) == (StatusCode.FAILED_PRECONDITION, message)
    # Absence allowed: the directory is handed back unchecked.
    assert locator.repo_path(Repo("default", "broken.git"), must_exist=False) == str(repo_dir)


def test_missing_repository_is_not_found(locator: Locator, root: Path) -> None:
    (root / "file").write_text("not a directory")
    for relative_path in ["gone.git", "a/b/gone.git", "file/inner.git"]:
        expect_error(
            locator, Repo("default", relative_path), StatusCode.NOT_FOUND, "repository not found"
        )
    with pytest.raises(GitalyError) as info:
        locator.validate_repo_dir(f"{root}/gone.git")
    assert (info.value.code, info.value.message) == (StatusCode.NOT_FOUND, "repository not found")


def test_regular_file_is_not_a_repository(locator: Locator, root: Path) -> None:
    (root / "file.git").write_text("")
    expect_error(
        locator,
        Repo("default", "file.git"),
        StatusCode.UNKNOWN,
        "validate git directory: not a directory",
    )


def test_containment_is_lexical(locator: Locator, root: Path, tmp_path: Path) -> None:
    # Gitaly does not resolve symlinks: a link inside the storage is accepted even when it
    # points elsewhere. Documented here so a change of that rule is a conscious one.
    outside = git_init_bare(tmp_path / "outside.git")
    (root / "link.git").symlink_to(outside)
    assert locator.repo_path(Repo("default", "link.git")) == f"{root}/link.git"


def test_storage_path(locator: Locator, root: Path) -> None:
    assert locator.storage_path("default") == str(root)
    for name, message in [("", "storage name not set"), ("nope", "storage name not found")]:
        with pytest.raises(GitalyError) as info:
            locator.storage_path(name)
        assert (info.value.code, info.value.message) == (INVALID, message)


def test_storage_paths_are_cleaned(root: Path) -> None:
    locator = Locator([Storage("default", f"{root}/./")])
    assert locator.storages == (Storage("default", str(root)),)
    path = locator.repo_path(Repo("default", "a.git"), must_exist=False)
    assert path == f"{root}/a.git"


@pytest.mark.parametrize(
    "storages",
    [
        pytest.param([Storage("", "/srv")], id="empty-name"),
        pytest.param([Storage("a", "/srv"), Storage("a", "/srv2")], id="duplicate"),
        pytest.param([Storage("a", "srv")], id="relative-path"),
    ],
)
def test_bad_configuration_is_refused(storages: list[Storage]) -> None:
    with pytest.raises(ValueError, match="storage"):
        Locator(storages)


def test_tmp_dir_is_created_private(locator: Locator, root: Path) -> None:
    tmp = locator.tmp_dir("default")
    assert tmp == f"{root}/+gitaly/tmp"
    for directory in (root / "+gitaly", root / "+gitaly" / "tmp"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    (root / "+gitaly" / "tmp" / "keep").write_text("")
    assert locator.tmp_dir("default") == tmp
    assert (root / "+gitaly" / "tmp" / "keep").exists()


def test_tmp_dir_errors(locator: Locator) -> None:
    with pytest.raises(GitalyError) as info:
        locator.tmp_dir("nope")
    assert (info.value.code, info.value.message) == (INVALID, 'tmp dir: no such storage: "nope"')
    with pytest.raises(GitalyError) as info:
        locator.tmp_dir("missing")
    assert (info.value.code, info.value.message) == (
        StatusCode.NOT_FOUND,
        "storage does not exist",
    )


@pytest.mark.parametrize("entry", ["objects", "refs", "HEAD"])
def test_a_change_after_validation_is_seen_on_the_next_call(
    locator: Locator, root: Path, entry: str
) -> None:
    """The locator remembers a validated repository, but never past a change to it."""
    repo_dir = git_init_bare(root / "a.git")
    repo = Repo("default", "a.git")
    assert locator.repo_path(repo) == str(repo_dir)
    assert locator.repo_path(repo) == str(repo_dir)  # remembered
    target = repo_dir / entry
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    message = f'repository not valid: "{entry}" does not exist'
    expect_error(locator, repo, StatusCode.FAILED_PRECONDITION, message)


def test_a_removed_or_replaced_repository_is_seen_on_the_next_call(
    locator: Locator, root: Path, tmp_path: Path
) -> None:
    repo_dir = git_init_bare(root / "a.git")
    repo = Repo("default", "a.git")
    locator.repo_path(repo)
    shutil.rmtree(repo_dir)
    expect_error(locator, repo, StatusCode.NOT_FOUND, "repository not found")
    # Replaced by a directory that is no repository: a new inode, validated afresh.
    (root / "a.git").mkdir()
    expect_error(
        locator,
        repo,
        StatusCode.FAILED_PRECONDITION,
        'repository not valid: "objects" does not exist',
    )
    # And the storage itself gone: the storage's error, as without the memory.
    shutil.rmtree(root / "a.git")
    git_init_bare(root / "a.git")
    locator.repo_path(repo)
    shutil.move(str(root), str(tmp_path / "elsewhere"))
    expect_error(locator, repo, StatusCode.NOT_FOUND, "storage does not exist")

"""Quarantine object directories: what a push's access checks may point git at."""

from __future__ import annotations

import os

import pytest

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.rpc.gen.gitaly.shared_pb2 import Repository
from trio_gitaly.storage.locator import Locator, Storage
from trio_gitaly.storage.quarantine import object_directories, quarantine_prefix


@pytest.fixture
def setup(tmp_path: os.PathLike[str]) -> tuple[Locator, Repository, str]:
    storage = os.path.join(tmp_path, "storage")
    repo_path = os.path.join(storage, "group", "project.git")
    for sub in ("objects/incoming-abc", "refs"):
        os.makedirs(os.path.join(repo_path, sub))
    open(os.path.join(repo_path, "HEAD"), "w").close()
    os.makedirs(os.path.join(storage, "other.git", "objects"))
    locator = Locator([Storage("default", storage)])
    return locator, Repository(storage_name="default", relative_path="group/project.git"), repo_path


def test_git_receive_pack_quarantine_inside_the_repository(
    setup: tuple[Locator, Repository, str],
) -> None:
    locator, repo, repo_path = setup
    dirs = object_directories(
        locator, repo, repo_path, object_dir="objects/incoming-abc", alternates=["objects"]
    )
    assert dirs.object_dir == os.path.join(repo_path, "objects/incoming-abc")
    assert dirs.env() == {
        "GIT_OBJECT_DIRECTORY": os.path.join(repo_path, "objects/incoming-abc"),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.path.join(repo_path, "objects"),
    }


def test_own_quarantine_in_the_storage_tmp_dir(setup: tuple[Locator, Repository, str]) -> None:
    locator, repo, repo_path = setup
    own = os.path.join(locator.tmp_dir("default"), quarantine_prefix(repo.relative_path) + "x")
    os.makedirs(own)
    dirs = object_directories(
        locator, repo, repo_path, object_dir=os.path.relpath(own, repo_path), alternates=[]
    )
    assert dirs.object_dir == own


@pytest.mark.parametrize(
    ("object_dir", "message"),
    [
        ("../../other.git/objects", "not a valid relative path"),
        ("../../../outside", "escapes root directory"),
        ("../../+gitaly/tmp/quarantine-0000000000000000-x", "not a valid relative path"),
    ],
    ids=["another repository", "outside the storage", "someone else's quarantine"],
)
def test_foreign_directories_are_refused(
    setup: tuple[Locator, Repository, str], object_dir: str, message: str
) -> None:
    locator, repo, repo_path = setup
    os.makedirs(
        os.path.join(locator.tmp_dir("default"), "quarantine-0000000000000000-x"), exist_ok=True
    )
    with pytest.raises(GitalyError) as info:
        object_directories(locator, repo, repo_path, object_dir=object_dir, alternates=[])
    assert info.value.code == StatusCode.INVALID_ARGUMENT
    assert message in info.value.message


def test_missing_directory_is_not_found(setup: tuple[Locator, Repository, str]) -> None:
    locator, repo, repo_path = setup
    with pytest.raises(GitalyError) as info:
        object_directories(
            locator, repo, repo_path, object_dir="objects/incoming-gone", alternates=[]
        )
    assert info.value.code == StatusCode.NOT_FOUND

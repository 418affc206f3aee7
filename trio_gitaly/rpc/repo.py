"""The repository a request names, located and with its object directories resolved."""

from __future__ import annotations

import msgspec

from trio_gitaly.rpc.gen.gitaly import shared_pb2
from trio_gitaly.storage.locator import Locator
from trio_gitaly.storage.quarantine import ObjectDirectories, object_directories


class Repo(msgspec.Struct, frozen=True):
    """A validated repository: its path and the object directories git must use."""

    path: str
    object_dirs: ObjectDirectories

    def env(self) -> dict[str, str]:
        """Environment for git commands on this repository (quarantine directories)."""
        return self.object_dirs.env()


def open_repo(locator: Locator, repository: shared_pb2.Repository | None) -> Repo:
    """Locate `repository` with Gitaly's rules and codes, and its quarantine directories.

    NOT_FOUND "repository not found" when missing; INVALID_ARGUMENT for a bad storage,
    path or object directory.
    """
    path = locator.repo_path(repository)
    assert repository is not None  # repo_path refuses None
    dirs = object_directories(
        locator,
        repository,
        path,
        object_dir=repository.git_object_directory,
        alternates=list(repository.git_alternate_object_directories),
    )
    return Repo(path, dirs)

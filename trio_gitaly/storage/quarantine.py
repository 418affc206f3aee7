"""Object directories a request names: the quarantine of a push being checked.

During a push, GitLab's access checks call back (ListAllCommits, CheckObjectsExist, ...)
with `git_object_directory` and `git_alternate_object_directories` set, relative to the
repository, so that git sees the pushed objects still held in quarantine. Those paths
come from the client: they must stay inside the storage and belong to this repository,
or a client could read another repository's objects.
"""

from __future__ import annotations

import hashlib
import os

import msgspec

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.storage.locator import Locator, RepositoryLike, go_join


class ObjectDirectories(msgspec.Struct, frozen=True):
    """Absolute object directories for git's environment ("" / () when not set)."""

    object_dir: str = ""
    alternates: tuple[str, ...] = ()

    def env(self) -> dict[str, str]:
        """GIT_OBJECT_DIRECTORY / GIT_ALTERNATE_OBJECT_DIRECTORIES for these directories."""
        env: dict[str, str] = {}
        if self.object_dir:
            env["GIT_OBJECT_DIRECTORY"] = self.object_dir
        if self.alternates:
            env["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = ":".join(self.alternates)
        return env


# What almost every request has: no quarantine (one shared instance, it is immutable).
_NONE = ObjectDirectories()


def quarantine_prefix(relative_path: str) -> str:
    """The name prefix of this repository's quarantine directories in the storage's tmp."""
    digest = hashlib.sha1(relative_path.encode()).hexdigest()[:16]
    return f"quarantine-{digest}-"


def object_directories(
    locator: Locator,
    repo: RepositoryLike,
    repo_path: str,
    *,
    object_dir: str,
    alternates: list[str],
) -> ObjectDirectories:
    """Resolve and validate a request's object directories (relative to the repository).

    Accepted, as in Gitaly: a directory inside the repository (git's own
    `objects/incoming-*` quarantine), a transaction quarantine (`.../quarantine` or
    `.../quarantine/tmp_objdir*`), or this repository's quarantine in the storage's
    temporary directory. Anything else is INVALID_ARGUMENT; a missing one is NOT_FOUND.
    """
    if not object_dir and not alternates:
        return _NONE
    resolved = _resolve(locator, repo, repo_path, object_dir) if object_dir else ""
    return ObjectDirectories(
        resolved, tuple(_resolve(locator, repo, repo_path, path) for path in alternates)
    )


def _resolve(locator: Locator, repo: RepositoryLike, repo_path: str, relative: str) -> str:
    if "\0" in relative:
        raise GitalyError(StatusCode.INVALID_ARGUMENT, "object directory contains a NUL byte")
    storage_root = locator.storage_path(repo.storage_name)
    absolute = go_join(repo_path, relative)
    if not absolute.startswith(storage_root.rstrip("/") + "/"):
        raise GitalyError(
            StatusCode.INVALID_ARGUMENT,
            "validate relative path: relative path escapes root directory",
        )
    base, parent = os.path.basename(absolute), os.path.basename(os.path.dirname(absolute))
    transaction = base == "quarantine" or (parent == "quarantine" and base.startswith("tmp_objdir"))
    inside_repository = absolute == repo_path or absolute.startswith(repo_path.rstrip("/") + "/")
    if not (transaction or inside_repository):
        own = os.path.join(
            locator.tmp_dir(repo.storage_name), quarantine_prefix(repo.relative_path)
        )
        if not absolute.startswith(own):
            raise GitalyError(
                StatusCode.INVALID_ARGUMENT,
                "not a valid relative path: relative path escapes root directory",
            )
    if not os.path.exists(absolute):
        raise GitalyError(StatusCode.NOT_FOUND, f"object directory does not exist: {absolute!r}")
    return absolute

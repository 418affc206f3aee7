"""Map a client's (storage name, relative path) onto a directory, as Gitaly's locator does.

The checks, their order, codes and messages follow Gitaly's `configLocator.ValidateRepository`
so that clients (Rails, Workhorse, gitlab-shell) see the errors they already handle:

1. repository unset, or both fields empty  INVALID_ARGUMENT "repository not set"
2. empty relative path                     INVALID_ARGUMENT "repository path not set"
3. empty storage name                      INVALID_ARGUMENT "storage name not set"
4. unknown storage name                    INVALID_ARGUMENT "storage name not found"
5. storage directory missing               NOT_FOUND "storage does not exist"
6. relative path leaves the storage        INVALID_ARGUMENT "relative path escapes root directory"
7. (existence check) path missing          NOT_FOUND "repository not found"
8. (existence check) no objects/refs/HEAD  FAILED_PRECONDITION
                                           'repository not valid: "<entry>" does not exist'

Containment is lexical, like Go's `filepath.Join` + `Clean`: symlinks are not resolved. Go's
`Join` does not let an absolute second element replace the first (Python's `os.path.join`
does), so a relative path "/etc" names `<storage>/etc`, which Gitaly accepts; we do the same.

Stricter than Gitaly (deliberate): a relative path containing NUL, naming the storage root
itself ("", ".", "a/..") or anything under the internal `+gitaly` directory is refused with
INVALID_ARGUMENT. Gitaly would let such a path reach `stat` or even `git init`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from trio_gitaly.errors import (
    GitalyError,
    StatusCode,
    failed_precondition,
    invalid_argument,
    not_found,
)
from trio_gitaly.mounts import filesystem_of, mount_table

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Per-storage directory for Gitaly's own data; `+` is not allowed in GitLab project paths,
#: so no repository can collide with it.
INTERNAL_DIR: Final = "+gitaly"
#: Per-storage scratch space (quarantines, staging); must share the storage's filesystem so
#: that a rename into a repository is atomic.
TMP_DIR: Final = f"{INTERNAL_DIR}/tmp"

# Entries whose presence makes a directory a git dir, in the order Gitaly checks them (the
# first missing one is named in the error).
_GIT_DIR_ENTRIES: Final = ("objects", "refs", "HEAD")
#: Repositories whose last successful validation the locator remembers (oldest dropped).
VALIDATED_REPOSITORIES: Final = 4096
# A directory's identity and last change: (st_dev, st_ino, st_mtime_ns).
_Signature = tuple[int, int, int]

_DIR_MODE: Final = 0o700


class RepositoryLike(Protocol):
    """What the locator reads from a request's repository; `gitaly.Repository` satisfies it."""

    @property
    def storage_name(self) -> str: ...

    @property
    def relative_path(self) -> str: ...


@dataclass(frozen=True)
class Storage:
    """A configured storage: a unique name and an absolute directory."""

    name: str
    path: str


def _go_clean(path: str) -> str:
    """Clean `path` lexically like Go's `filepath.Clean` (for absolute paths)."""
    cleaned = posixpath.normpath(path)
    # POSIX lets normpath keep exactly two leading slashes; Go collapses them.
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def go_join(root: str, rel: str) -> str:
    """Join like Go's `filepath.Join`: an absolute `rel` stays under `root`."""
    return _go_clean(root + "/" + rel)


class Locator:
    """Resolves and validates repository paths inside the configured storages."""

    def __init__(self, storages: Sequence[Storage]) -> None:
        """Take the configured storages; names must be unique and paths absolute.

        Raises:
            ValueError: a name is empty or repeated, or a path is not absolute.
        """
        by_name: dict[str, Storage] = {}
        for storage in storages:
            if not storage.name:
                raise ValueError("storage name must not be empty")
            if storage.name in by_name:
                raise ValueError(f"duplicate storage name {storage.name!r}")
            if not os.path.isabs(storage.path) or "\0" in storage.path:
                raise ValueError(f"storage {storage.name!r}: path must be absolute")
            # Clean once here, as Gitaly does at config load: the containment check compares
            # cleaned strings, so an uncleaned root ("/srv/x/") would reject every path.
            by_name[storage.name] = Storage(storage.name, _go_clean(storage.path))
        self._by_name = by_name
        self._storages = tuple(by_name.values())
        self._on_nfs = _nfs_storages(self._storages)
        # (storage path, relative path) -> (repository path, its directory's stat
        # signature when it last passed `_validate_git_dir`); see `repo_path`.
        self._validated: dict[tuple[str, str], tuple[str, _Signature]] = {}

    @property
    def storages(self) -> tuple[Storage, ...]:
        """The storages in configuration order, with cleaned paths."""
        return self._storages

    def storage_path(self, name: str) -> str:
        """Return the directory of storage `name`.

        Raises:
            GitalyError: INVALID_ARGUMENT "storage name not set" / "storage name not found".
        """
        if not name:
            raise invalid_argument("storage name not set")
        storage = self._by_name.get(name)
        if storage is None:
            raise invalid_argument("storage name not found", storage_name=name)
        return storage.path

    def repo_path(self, repo: RepositoryLike | None, *, must_exist: bool = True) -> str:
        """Validate `repo` and return its absolute, cleaned directory.

        Args:
            repo: the request's repository message.
            must_exist: check that the directory exists and looks like a git dir. Pass
                False where the repository may legitimately be absent (CreateRepository,
                RepositoryExists); every other check still applies.

        Raises:
            GitalyError: with Gitaly's code and message for the first failed check (see the
                module docstring).
        """
        if repo is None or (not repo.storage_name and not repo.relative_path):
            raise invalid_argument("repository not set")
        relative_path = repo.relative_path
        if not relative_path:
            raise invalid_argument("repository path not set")

        storage_path = self.storage_path(repo.storage_name)
        key = (storage_path, relative_path)
        known = self._validated.get(key) if must_exist else None
        # Removing or replacing objects, refs or HEAD changes the directory's mtime, and
        # removing the repository fails the stat: an unchanged directory is still valid,
        # so the per-entry stats (and the storage's) are only needed again after a change.
        if known is not None and _signature(known[0]) == known[1]:
            if storage_path in self._on_nfs:
                _revalidate_packed_refs(known[0])
            return known[0]
        _stat_storage(storage_path)

        path = self._contained_path(storage_path, relative_path)
        if must_exist:
            info = self._validate_git_dir(
                path,
                nfs=storage_path in self._on_nfs,
                storage_name=repo.storage_name,
                relative_path=relative_path,
            )
            if len(self._validated) >= VALIDATED_REPOSITORIES:
                del self._validated[next(iter(self._validated))]
            self._validated[key] = (path, (info.st_dev, info.st_ino, info.st_mtime_ns))
        return path

    def validate_repo_dir(self, path: str) -> None:
        """Check that the directory `path` exists and contains objects, refs and HEAD.

        Raises:
            GitalyError: NOT_FOUND "repository not found", or FAILED_PRECONDITION
                'repository not valid: "<entry>" does not exist'.
        """
        self._validate_git_dir(path, repository_path=path)

    def tmp_dir(self, storage_name: str) -> str:
        """Return `<storage>/+gitaly/tmp`, creating it (and `+gitaly`) with mode 0700.

        Raises:
            GitalyError: INVALID_ARGUMENT for an unknown storage, NOT_FOUND "storage does
                not exist" when the storage directory is missing.
            OSError: the directories could not be created for another reason.
        """
        storage = self._by_name.get(storage_name)
        if storage is None:
            # Gitaly's wording for its per-storage internal directories.
            raise invalid_argument(
                f'tmp dir: no such storage: "{storage_name}"', storage_name=storage_name
            )
        internal = posixpath.join(storage.path, INTERNAL_DIR)
        tmp = posixpath.join(storage.path, TMP_DIR)
        for directory in (internal, tmp):
            try:
                os.mkdir(directory, _DIR_MODE)
            except FileExistsError:
                pass
            except FileNotFoundError:
                # Only `internal` can hit this: its parent, the storage, is gone.
                raise not_found("storage does not exist", storage_path=storage.path) from None
        return tmp

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _contained_path(root: str, relative_path: str) -> str:
        """Join and clean `relative_path` under `root`, refusing anything outside a repo."""
        if "\0" in relative_path:
            # The OS would reject it at stat time with an unhelpful error, and with
            # must_exist=False nothing would stat it before a git command sees it.
            raise invalid_argument("relative path contains a NUL byte", relative_path=relative_path)
        path = go_join(root, relative_path)
        if path == root:
            raise invalid_argument(
                "relative path refers to the storage root", relative_path=relative_path
            )
        prefix = root.rstrip("/") + "/"
        if not path.startswith(prefix):
            raise invalid_argument(
                "relative path escapes root directory", relative_path=relative_path
            )
        first = path[len(prefix) :].split("/", 1)[0]
        if first == INTERNAL_DIR:
            # Quarantines, caches and the WAL live there; a client addressing them as a
            # repository could read or corrupt another repository's in-flight data.
            raise invalid_argument(
                "relative path refers to an internal directory", relative_path=relative_path
            )
        return path

    @staticmethod
    def _validate_git_dir(path: str, *, nfs: bool = True, **metadata: Any) -> os.stat_result:
        try:
            info = os.stat(path)
        except OSError as exc:
            # ENOTDIR: a path component is a file, e.g. "file.git/inner"; nothing is there.
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise not_found("repository not found", **metadata) from None
            raise _unknown(f"validate git directory: stat: {exc.strerror}", path) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise _unknown("validate git directory: not a directory", path)

        for entry in _GIT_DIR_ENTRIES:
            try:
                os.stat(posixpath.join(path, entry))
            except FileNotFoundError:
                raise failed_precondition(
                    f'repository not valid: "{entry}" does not exist', repository_path=path
                ) from None
            except OSError as exc:
                raise _unknown(
                    f'validate git directory: stat "{entry}": {exc.strerror}', path
                ) from exc

        if nfs:
            _revalidate_packed_refs(path)
        return info


def _signature(path: str) -> _Signature | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_mtime_ns)


def _nfs_storages(storages: Sequence[Storage]) -> frozenset[str]:
    """The storage paths on NFS; all of them when the mount table cannot be read."""
    try:
        table = mount_table()
    except OSError:
        return frozenset(storage.path for storage in storages)
    return frozenset(
        storage.path for storage in storages if filesystem_of(storage.path, table).startswith("nfs")
    )


def _revalidate_packed_refs(path: str) -> None:
    # NFS v4.0 client workaround (gitaly#1339): stat-ing packed-refs revalidates the
    # cached directory entry so that a later open does not hit a stale handle. Whether
    # the file exists does not matter; other filesystems have no such cache to refresh.
    with contextlib.suppress(OSError):
        os.stat(posixpath.join(path, "packed-refs"))


def is_repository(path: str) -> bool:
    """Whether the directory `path` has what a git directory needs (objects, refs, HEAD).

    The cheap test walkers use to decide "a repository: count or optimise it, do not
    descend"; it never raises.
    """
    return all(os.path.exists(posixpath.join(path, entry)) for entry in _GIT_DIR_ENTRIES)


def _stat_storage(storage_path: str) -> None:
    try:
        os.stat(storage_path)
    except FileNotFoundError:
        raise not_found("storage does not exist", storage_path=storage_path) from None
    except OSError as exc:
        raise GitalyError(
            StatusCode.UNKNOWN,
            f"storage path: {exc.strerror}",
            metadata={"storage_path": storage_path},
        ) from exc


def _unknown(message: str, path: str) -> GitalyError:
    # Gitaly leaves unexpected stat failures uncategorised (structerr.New → Unknown), so a
    # wrapping layer with a more specific code may still override it.
    return GitalyError(StatusCode.UNKNOWN, message, metadata={"repository_path": path})

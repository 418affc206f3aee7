"""Making filesystem changes durable and exclusive: fsync helpers and repository locks.

A repository appears or disappears by one rename; these helpers make sure what the
rename exposes is on disk first, and that two RPCs never create or remove the same
repository at once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from trio_gitaly.errors import GitalyError, StatusCode

LOCK_SUFFIX = ".lock"


def sync_dir(path: str) -> None:
    """fsync a directory, so that the entries just created or renamed in it persist."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: str, content: bytes, *, mode: int = 0o600) -> None:
    """Atomically make `path` hold `content` (mode `mode`), synced before it appears.

    Written to a temporary file in the same directory, fsync-ed, then renamed over
    `path`: a reader sees the old file or the whole new one, never a part.

    Raises:
        OSError: the file could not be written or renamed; nothing is left behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        with open(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def sync_tree(root: str) -> None:
    """fsync every file and directory under `root` (a freshly built repository)."""
    for directory, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        sync_dir(directory)


@contextlib.contextmanager
def repository_lock(path: str) -> Iterator[None]:
    """Hold `<path>.lock` (created exclusively) while a repository is created or removed.

    The parent directory is created if missing. A lock held by someone else is
    FAILED_PRECONDITION "repository is already locked", as in Gitaly.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock = path + LOCK_SUFFIX
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise GitalyError(
            StatusCode.FAILED_PRECONDITION, "repository is already locked", metadata={"path": path}
        ) from None
    os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)


def publish_repository(built: str, target: str) -> None:
    """Rename a fully built repository into place, durably (blocking: run in a thread).

    ALREADY_EXISTS when something appeared at `target` meanwhile; the built copy is
    then left for the caller to remove.
    """
    sync_tree(built)
    with repository_lock(target):
        if os.path.lexists(target):
            raise GitalyError(StatusCode.ALREADY_EXISTS, "repository exists already")
        os.rename(built, target)
        sync_dir(os.path.dirname(target))


def stage_removal(path: str, staging: str) -> None:
    """Rename a repository out of its storage into `staging` (blocking: run in a thread).

    After this the repository is gone for every client; deleting `staging` is cleanup.
    """
    with repository_lock(path):
        if not os.path.lexists(path):
            raise GitalyError(StatusCode.NOT_FOUND, "repository was concurrently removed")
        os.rename(path, os.path.join(staging, "repo"))
        sync_dir(os.path.dirname(path))

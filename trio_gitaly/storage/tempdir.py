"""Per-RPC temporary directories in `<storage>/+gitaly/tmp`, and removing them.

An RPC that stages something (a repository being built, one being deleted) does it in
the storage's tmp directory, on the storage's filesystem, so that the final rename is
atomic. The directory belongs to the RPC: `new_tempdir` removes it when the block ends,
whether the RPC succeeded, failed or was cancelled. What survives a crash is left for
the tempdir cleaner (workers/tempdir_cleaner.py), which removes entries older than a
week.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import tempfile
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_gitaly.storage.locator import Locator

LOG = logging.getLogger("trio_gitaly.tempdir")

#: Gitaly's name prefix for per-RPC temporary directories.
DEFAULT_PREFIX: Final = "repo"

# What a directory needs for its entries to be listed and unlinked by its owner. A git
# process or a client-supplied archive may leave a directory without it (mode 0 even),
# and `rmtree` would fail there.
_OWNER_RWX: Final = stat.S_IRWXU


@contextlib.asynccontextmanager
async def new_tempdir(
    locator: Locator, storage_name: str, *, prefix: str = DEFAULT_PREFIX
) -> AsyncIterator[str]:
    """Create a fresh directory under the storage's tmp directory; remove it at the end.

    Yields the directory's absolute path (mode 0700, named `<prefix><random>`).

    Raises:
        GitalyError: the storage is unknown or missing (from `Locator.tmp_dir`).
        OSError: the directory could not be created.

    Cancellation: the removal still runs, shielded; it waits for nothing but the
    filesystem, so it is bounded by the size of the tree. A removal that fails is
    logged, not raised: the tempdir cleaner removes the rest within a week.
    """
    path = tempfile.mkdtemp(prefix=prefix, dir=locator.tmp_dir(storage_name))
    try:
        yield path
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_remove_logged, path)


def remove_tree(path: str) -> None:
    """Remove `path` (a file, a symlink or a directory tree), fixing directory modes first.

    Blocking: run it in a thread. A `path` that is already gone is fine.

    Raises:
        OSError: something could not be removed.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return
    _make_dirs_owner_accessible(path)
    shutil.rmtree(path)


def _make_dirs_owner_accessible(root: str) -> None:
    # Iterative, so a deep tree cannot hit Python's recursion limit. A directory is fixed
    # before it is listed, since listing one without r-x fails.
    pending = [root]
    while pending:
        directory = pending.pop()
        info = os.lstat(directory)
        if info.st_mode & _OWNER_RWX != _OWNER_RWX:
            os.chmod(directory, stat.S_IMODE(info.st_mode) | _OWNER_RWX)
        with os.scandir(directory) as entries:
            pending.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))


def _remove_logged(path: str) -> None:
    try:
        remove_tree(path)
    except OSError as exc:
        LOG.error(
            "failed to cleanup temp dir",
            extra={"fields": {"temporary_directory": path, "error": str(exc)}},
        )

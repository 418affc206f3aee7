"""What the BlobService modules share: the object reader and revision validation."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.revision import validate_revision

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from trio_gitaly.git.catfile import CatfileCache, ObjectReader
    from trio_gitaly.rpc.repo import Repo


@asynccontextmanager
async def object_reader(catfile: CatfileCache, repo: Repo) -> AsyncIterator[ObjectReader]:
    """A cat-file reader for `repo`, seeing its quarantine directories if any.

    Cancellation: leaving the block mid-request kills the process (`CatfileCache.reader`).
    """
    async with catfile.reader(
        repo.path,
        object_dir=repo.object_dirs.object_dir,
        alternate_dirs=repo.object_dirs.alternates,
    ) as reader:
        yield reader


def validate_walk_revisions(revisions: Sequence[str]) -> None:
    """Revisions to walk (ListBlobs, ListLFSPointers): path-scoped and pseudo allowed.

    Raises:
        GitalyError: INVALID_ARGUMENT "missing revisions", or "invalid revision: <why>".
    """
    if not revisions:
        raise GitalyError(StatusCode.INVALID_ARGUMENT, "missing revisions")
    for revision in revisions:
        try:
            validate_revision(revision, allow_path_scoped=True, allow_pseudo=True)
        except GitalyError as error:
            raise GitalyError(
                StatusCode.INVALID_ARGUMENT,
                f"invalid revision: {error.message}",
                metadata={"revision": revision},
            ) from None

"""What the tree and path RPCs share: a cat-file reader for a request's repository."""

from __future__ import annotations

import os
from contextlib import AbstractAsyncContextManager

from trio_gitaly.git.catfile_reader import ObjectReader
from trio_gitaly.rpc.repo import Repo
from trio_gitaly.rpc.services import ServiceBase


class TreesBase(ServiceBase):
    """ServiceBase plus the helpers of the tree and path RPCs."""

    def _reader(self, repo: Repo) -> AbstractAsyncContextManager[ObjectReader]:
        """A cat-file reader for `repo`, its quarantine directories included."""
        return self._deps.catfile.reader(
            repo.path,
            object_dir=repo.object_dirs.object_dir,
            alternate_dirs=repo.object_dirs.alternates,
        )


def arg(value: bytes) -> str:
    """Client bytes as a git argument, byte for byte (undecodable bytes round-trip)."""
    return os.fsdecode(value)

"""What the history RPCs share: reading commits through the cat-file cache, git's env."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import invalid_argument
from trio_gitaly.git.objects import Commit, parse_commit
from trio_gitaly.git.revlist_objects import ObjectPipe, object_pipe
from trio_gitaly.rpc.services import ServiceBase

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_gitaly.git.catfile_reader import ObjectReader
    from trio_gitaly.rpc.gen.gitaly import shared_pb2
    from trio_gitaly.rpc.repo import Repo

#: The empty tree of each object format: what a root commit is compared with.
EMPTY_TREE_IDS: Final = {
    40: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
    64: "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
}
#: A walk expected to read at most this many commits uses the cached cat-file (a round
#: trip each, about 0.25 ms); a longer one starts its own, pipelined (about 3 ms to start).
FEW_COMMITS: Final = 16


class HistoryBase(ServiceBase):
    """The dependencies plus the object access every history RPC uses."""

    def _objects(self, repo: Repo) -> AbstractAsyncContextManager[ObjectReader]:
        """A cat-file reader on `repo` for `async with`, quarantine directories included.

        Cancellation: leaving the block mid-read kills the process (see CatfileCache).
        """
        return self._deps.catfile.reader(
            repo.path,
            object_dir=repo.object_dirs.object_dir,
            alternate_dirs=repo.object_dirs.alternates,
        )

    @asynccontextmanager
    async def _walk_objects(
        self, repo: Repo, *, expected: int
    ) -> AsyncIterator[ObjectPipe | ObjectReader]:
        """Where a walk reads its commits: the cached reader when it expects at most
        FEW_COMMITS (0 to FEW_COMMITS; negative is unbounded), else a pipe of its own.

        Cancellation: leaving the block kills whatever process is mid-request.
        """
        if 0 <= expected <= FEW_COMMITS:
            async with self._objects(repo) as reader:
                yield reader
        else:
            async with object_pipe(self._deps.git, repo.path, repo.env()) as pipe:
                yield pipe


def walk_env(repo: Repo, global_options: shared_pb2.GlobalOptions | None = None) -> dict[str, str]:
    """git's environment for a walk: quarantine directories, and literal pathspecs on
    request (Gitaly sets GIT_LITERAL_PATHSPECS rather than passing the global flag)."""
    env = repo.env()
    if global_options is not None and global_options.literal_pathspecs:
        env["GIT_LITERAL_PATHSPECS"] = "1"
    return env


async def read_commit(reader: ObjectReader, revision: bytes) -> Commit | None:
    """The commit `revision` names, peeled (`<revision>^{commit}`); None if there is none.

    A revision with a newline cannot be put on cat-file's line protocol (our minimum
    git has no -z): it is reported as not found. Only a path or a message search
    (`^{/...}`) can contain one, and neither names a commit in practice.

    Raises:
        GitalyError: INVALID_ARGUMENT "revision must not contain NUL bytes" (Gitaly's
            object reader's message), INTERNAL when git fails.

    Cancellation: as `ObjectReader.read`.
    """
    if b"\x00" in revision:
        raise invalid_argument("revision must not contain NUL bytes")
    if b"\n" in revision:
        return None
    found = await reader.read(revision + b"^{commit}")
    if found is None:
        return None
    info, data = found
    return parse_commit(info.oid, data)

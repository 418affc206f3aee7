"""What RefService's listings share: the objects refs point at, as Gitaly's messages, and
Gitaly's page-token rules.

Objects are read through one cat-file process per RPC. Many refs usually point at few
commits (branches off the same tip, a lightweight and an annotated tag of one release),
so each RPC keeps the last few converted commits instead of reading them again.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import GitalyError, StatusCode, internal
from trio_gitaly.git.objects import parse_commit, parse_tag
from trio_gitaly.git.refs import read_small_object
from trio_gitaly.rpc.gen.gitaly import shared_pb2
from trio_gitaly.rpc.gitproto import git_commit, git_tag
from trio_gitaly.rpc.streaming import page_limit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_gitaly.git.catfile_reader import ObjectReader
    from trio_gitaly.rpc.repo import Repo
    from trio_gitaly.rpc.services import Dependencies

#: Converted commits kept per RPC. A GitCommit holds at most 10 KiB of message plus the
#: identities, so this bounds the cache to a few MiB however many refs are listed.
COMMIT_CACHE_ENTRIES: Final = 256
# What git calls a failed lookup, and Gitaly's catfile error for it.
_OBJECT_NOT_FOUND: Final = "object not found"


class TargetReader:
    """Turns the objects refs point at into GitCommit and Tag messages.

    Args:
        reader: a checked-out cat-file reader, used for this RPC only.
    """

    def __init__(self, reader: ObjectReader) -> None:
        self.reader = reader
        self._commits: OrderedDict[str, shared_pb2.GitCommit] = OrderedDict()

    async def commit(self, revision: str) -> shared_pb2.GitCommit:
        """The commit `revision` peels to (`<revision>^{commit}`), as Gitaly's GitCommit.

        Raises:
            GitalyError: INTERNAL "object not found" when it peels to no commit.

        Cancellation:
            Cancelled mid-read, the cat-file process is broken and will be killed.
        """
        cached = self._commits.get(revision)
        if cached is not None:
            self._commits.move_to_end(revision)
            return cached
        found = await self.reader.read(f"{revision}^{{commit}}")
        if found is None:
            raise internal(_OBJECT_NOT_FOUND, revision=revision)
        info, data = found
        return self._remember(revision, info.oid, data)

    def _remember(self, revision: str, oid: str, data: bytes) -> shared_pb2.GitCommit:
        converted = git_commit(parse_commit(oid, data))
        self._commits[revision] = converted
        if oid != revision:
            self._commits[oid] = converted
        while len(self._commits) > COMMIT_CACHE_ENTRIES:
            self._commits.popitem(last=False)
        return converted

    async def peeled_commit(self, revision: str) -> shared_pb2.GitCommit | None:
        """The commit at the end of a chain of tags, or None if it ends in a tree or blob.

        Raises:
            GitalyError: INTERNAL "object not found" for a broken chain.

        Cancellation:
            Cancelled mid-read, the cat-file process is broken and will be killed.
        """
        info = await self.reader.info(f"{revision}^{{}}")
        if info is None:
            raise internal(_OBJECT_NOT_FOUND, revision=revision)
        if info.type != "commit":
            return None
        return await self.commit(info.oid)

    async def annotated_tag(self, oid: str, data: bytes, name: bytes) -> shared_pb2.Tag:
        """An annotated tag object as Gitaly's Tag, its target commit peeled.

        Args:
            oid, data: the tag object.
            name: the name to report (the ref's); b"" keeps the tag header's name.

        Cancellation:
            Cancelled mid-read, the cat-file process is broken and will be killed.
        """
        tag = parse_tag(oid, data, name=name or None)
        result = git_tag(tag)
        target: shared_pb2.GitCommit | None = None
        if tag.object_type == "commit":
            target = await self.commit(tag.object_oid)
        elif tag.object_type == "tag":
            target = await self.peeled_commit(tag.object_oid)
        if target is not None:
            result.target_commit.CopyFrom(target)
        return result

    async def tag(self, oid: str, name: bytes) -> shared_pb2.Tag:
        """What a tag ref pointing at `oid` is, as Gitaly reports it.

        An annotated tag with its message, tagger and peeled target commit; a commit as
        a Tag with just the commit; a tree or blob as a Tag with just the id.

        Cancellation:
            Cancelled mid-read, the cat-file process is broken and will be killed.
        """
        cached = self._commits.get(oid)
        if cached is not None and cached.id == oid:
            # A commit seen already (lightweight tags of one release): no need to read
            # it again. (An entry under a tag's id holds the commit it peels to.)
            self._commits.move_to_end(oid)
            return shared_pb2.Tag(name=name, id=oid, target_commit=cached)
        found = await read_small_object(self.reader, oid)
        if found is None:
            raise internal(_OBJECT_NOT_FOUND, revision=oid)
        info, data = found
        if info.type == "tag" and data is not None:
            return await self.annotated_tag(info.oid, data, name)
        result = shared_pb2.Tag(name=name, id=info.oid)
        if info.type == "commit" and data is not None:
            if oid not in self._commits:
                self._remember(oid, info.oid, data)
            result.target_commit.CopyFrom(self._commits[oid])
        return result


class PageWindow:
    """Gitaly's PaginationParameter over a sorted listing of reference names.

    Items are skipped up to and including the one named by the page token; then up to
    `limit` are taken. An unset parameter takes everything; a negative limit is no
    limit; a limit of 0 takes nothing (and, with a page token, never finds it, which
    Gitaly reports as an invalid token).
    """

    def __init__(self, params: shared_pb2.PaginationParameter | None) -> None:
        if params is None:
            self._token = b""
            self.limit = page_limit(-1)
        else:
            self._token = params.page_token.encode("utf-8", "surrogateescape")
            self.limit = page_limit(params.limit)
        self.past_token = not self._token
        self.taken = 0

    @property
    def full(self) -> bool:
        """Whether `limit` items were taken: stop listing."""
        return self.taken >= self.limit

    def admit(self, name: bytes) -> bool:
        """Whether the item named `name` is in the page (counts it when it is)."""
        if not self.past_token:
            self.past_token = name == self._token
            return False
        self.taken += 1
        return True

    def check(self, message: str) -> None:
        """At the end of the listing: INVALID_ARGUMENT `message` if the token never came."""
        if not self.past_token:
            raise GitalyError(StatusCode.INVALID_ARGUMENT, message)


@asynccontextmanager
async def open_targets(deps: Dependencies, repo: Repo) -> AsyncIterator[TargetReader]:
    """A `TargetReader` on a cat-file process of the cache, for one RPC.

    Cancellation:
        Leaving the block mid-read kills the cat-file process instead of pooling it.
    """
    async with deps.catfile.reader(
        repo.path,
        object_dir=repo.object_dirs.object_dir,
        alternate_dirs=repo.object_dirs.alternates,
    ) as reader:
        yield TargetReader(reader)

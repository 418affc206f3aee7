"""Commits and objects by name: CheckObjectsExist, ListCommitsByOid, ListCommitsByRefName
and GetCommitMessages, looked up through the cached cat-file (CheckObjectsExist also
through a pipelined one of its own for long lists, see revlist_objects)."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from trio_gitaly.errors import GitalyError, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.revision import validate_revision
from trio_gitaly.git.revlist_objects import ObjectPipe, lookup, object_pipe
from trio_gitaly.rpc.gen.gitaly import commit_pb2, shared_pb2
from trio_gitaly.rpc.gitproto import git_commit
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services.commit.history_common import FEW_COMMITS, HistoryBase, read_commit
from trio_gitaly.rpc.streaming import Batcher, chunks

if TYPE_CHECKING:
    from trio_gitaly.git.catfile_reader import ObjectReader
    from trio_gitaly.rpc.call import ServerCall
    from trio_gitaly.rpc.repo import Repo

_Existence = commit_pb2.CheckObjectsExistResponse.RevisionExistence
_CommitForRef = commit_pb2.ListCommitsByRefNameResponse.CommitForRef


class ObjectHistory(HistoryBase):
    """The RPCs that look objects up one name at a time."""

    async def CheckObjectsExist(
        self, request: commit_pb2.CheckObjectsExistRequest | None, call: ServerCall
    ) -> None:
        """For every revision of every request message, whether it names an object.

        Path-scoped revisions ("main:README.md") are allowed. The repository comes in
        the first message; a stream without messages fails INTERNAL "EOF" (Gitaly
        keeps Praefect's answer).
        """
        if request is None:
            raise internal("EOF")
        repo = open_repo(self._deps.locator, request.repository)
        batch = Batcher[_Existence](
            call, lambda items: commit_pb2.CheckObjectsExistResponse(revisions=items)
        )
        message: commit_pb2.CheckObjectsExistRequest | None = request
        async with AsyncExitStack() as stack:
            reader = await stack.enter_async_context(self._objects(repo))
            pipe: ObjectPipe | None = None
            while message is not None:
                # Gitaly checks a whole message before looking any of it up.
                for revision in message.revisions:
                    try:
                        validate_revision(revision, allow_path_scoped=True)
                    except GitalyError as error:
                        raise error.wrap("invalid revision") from None
                revisions = list(message.revisions)
                if len(revisions) > FEW_COMMITS and pipe is None:
                    pipe = await stack.enter_async_context(
                        object_pipe(self._deps.git, repo.path, repo.env(), contents=False)
                    )
                for revision, exists in zip(
                    revisions, await self._existence(reader, pipe, repo, revisions), strict=True
                ):
                    await batch.add(_Existence(name=revision, exists=exists))
                message = await call.receive()
        await batch.flush()

    async def _existence(
        self, reader: ObjectReader, pipe: ObjectPipe | None, repo: Repo, revisions: list[bytes]
    ) -> list[bool]:
        """Whether each revision names an object: through the pipe when there is one
        and the message is long, else one round trip each through the cached reader."""
        if pipe is None or len(revisions) <= FEW_COMMITS:
            return [await self._exists(reader, repo, revision) for revision in revisions]
        plain = [revision for revision in revisions if b"\n" not in revision]
        answers = iter(await lookup(pipe, plain))
        return [
            (next(answers) is not None)
            if b"\n" not in revision
            else await self._exists(reader, repo, revision)
            for revision in revisions
        ]

    async def _exists(self, reader: ObjectReader, repo: Repo, revision: bytes) -> bool:
        if b"\n" not in revision:
            return await reader.info(revision) is not None
        # Only a path-scoped revision gets here with a newline, which cat-file's line
        # protocol cannot carry (our minimum git lacks -z): ask `cat-file -e` instead.
        result = await self._deps.git.run(
            GitCommand("cat-file", flags=["-e"], args=[os.fsdecode(revision)]),
            repo_path=repo.path,
            env=repo.env(),
            check=False,
        )
        return result.returncode == 0

    async def ListCommitsByOid(
        self, request: commit_pb2.ListCommitsByOidRequest, call: ServerCall
    ) -> None:
        """The commits of the given (possibly abbreviated) ids; unknown ids are skipped."""
        repo = open_repo(self._deps.locator, request.repository)
        batch = Batcher[shared_pb2.GitCommit](
            call, lambda items: commit_pb2.ListCommitsByOidResponse(commits=items)
        )
        async with self._objects(repo) as reader:
            for oid in request.oid:
                commit = await read_commit(reader, oid.encode())
                if commit is not None:
                    await batch.add(git_commit(commit))
        await batch.flush()

    async def ListCommitsByRefName(
        self, request: commit_pb2.ListCommitsByRefNameRequest, call: ServerCall
    ) -> None:
        """The commit each named reference points at; unknown names are skipped."""
        repo = open_repo(self._deps.locator, request.repository)
        batch = Batcher[_CommitForRef](
            call, lambda items: commit_pb2.ListCommitsByRefNameResponse(commit_refs=items)
        )
        async with self._objects(repo) as reader:
            for name in request.ref_names:
                commit = await read_commit(reader, name)
                if commit is not None:
                    await batch.add(_CommitForRef(commit=git_commit(commit), ref_name=name))
        await batch.flush()

    async def GetCommitMessages(
        self, request: commit_pb2.GetCommitMessagesRequest, call: ServerCall
    ) -> None:
        """The full message of each commit: a message with its id, then the text in
        128 KiB pieces (no piece for an empty message). An unknown id fails INTERNAL."""
        repo = open_repo(self._deps.locator, request.repository)
        async with self._objects(repo) as reader:
            for commit_id in request.commit_ids:
                revision = commit_id.encode()
                try:
                    found = await _read_raw_commit(reader, revision)
                except GitalyError as error:
                    raise error.wrap("failed to get commit message") from None
                if found is None:
                    raise internal("failed to get commit message: object not found")
                await call.send(commit_pb2.GetCommitMessagesResponse(commit_id=commit_id))
                # The message is what follows the first blank line, as stored.
                body = found.partition(b"\n\n")[2]
                if body:
                    for piece in chunks(body):
                        await call.send(commit_pb2.GetCommitMessagesResponse(message=piece))


async def _read_raw_commit(reader: ObjectReader, revision: bytes) -> bytes | None:
    """The raw commit `revision^{commit}` names, or None (see `read_commit`)."""
    if b"\x00" in revision:
        raise invalid_argument("revision must not contain NUL bytes")
    if b"\n" in revision:
        return None
    found = await reader.read(revision + b"^{commit}")
    return None if found is None else found[1]

"""CommitService TreeEntry and GetTreeEntries: one entry with its data, or a tree's list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument, not_found
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.catfile_reader import ObjectInfo, ObjectReader
from trio_gitaly.git.objects import TreeEntry as GitTreeEntry
from trio_gitaly.git.revision import validate_revision
from trio_gitaly.git.trees import (
    SORT_RANK,
    find_entry,
    flat_path,
    go_join,
    read_tree,
    resolve_path,
    stream_ls_tree,
)
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import commit_pb2, errors_pb2
from trio_gitaly.rpc.repo import Repo, open_repo
from trio_gitaly.rpc.services.commit.trees_common import TreesBase, arg
from trio_gitaly.rpc.services.commit.trees_pagination import paginate
from trio_gitaly.rpc.streaming import CHUNK_BYTES, Batcher

_ENTRY_TYPES: Final = {
    "blob": commit_pb2.TreeEntry.BLOB,
    "tree": commit_pb2.TreeEntry.TREE,
    "commit": commit_pb2.TreeEntry.COMMIT,
}
_RESPONSE_TYPES: Final = {
    "blob": commit_pb2.TreeEntryResponse.BLOB,
    "tree": commit_pb2.TreeEntryResponse.TREE,
    "commit": commit_pb2.TreeEntryResponse.COMMIT,
}


class CommitTreeEntries(TreesBase):
    """TreeEntry and GetTreeEntries."""

    async def TreeEntry(self, request: commit_pb2.TreeEntryRequest, call: ServerCall) -> None:
        """One tree entry: its type, oid, size and mode, then a blob's data in chunks.

        Cancellation: the cat-file process is killed; the client may have part of the data.
        """
        repo = open_repo(self._deps.locator, request.repository)
        revision = validate_revision(request.revision)
        if not request.path:
            raise invalid_argument("empty Path")
        if request.limit < 0:
            raise invalid_argument("negative Limit")
        if request.max_size < 0:
            raise invalid_argument("negative MaxSize")
        path = request.path
        # Go's path.Dir("dir/") is "dir", so Gitaly drops trailing slashes first.
        if len(path) > 1:
            path = path.rstrip(b"/")
        async with self._reader(repo) as reader:
            entry = await find_entry(reader, revision, path)
            if entry is None or not entry.oid:
                raise not_found("tree entry not found", path=path)
            if entry.kind == "commit":
                await call.send(
                    commit_pb2.TreeEntryResponse(
                        type=commit_pb2.TreeEntryResponse.COMMIT, mode=entry.mode, oid=entry.oid
                    )
                )
                return
            info = await reader.info(entry.oid)
            if info is None:
                raise internal("object not found", oid=entry.oid)
            if entry.kind == "tree":
                await call.send(
                    commit_pb2.TreeEntryResponse(
                        type=commit_pb2.TreeEntryResponse.TREE,
                        oid=entry.oid,
                        size=info.size,
                        mode=entry.mode,
                    )
                )
                return
            await _send_blob(reader, call, entry, info, request.limit, request.max_size)

    async def GetTreeEntries(
        self, request: commit_pb2.GetTreeEntriesRequest, call: ServerCall
    ) -> None:
        """The entries of the tree at revision:path, optionally recursive, sorted, paged.

        Cancellation: git (ls-tree or cat-file) is killed; part of the list may be sent.
        """
        repo = open_repo(self._deps.locator, request.repository)
        revision = validate_revision(request.revision)
        if not request.path:
            raise GitalyError(
                StatusCode.INVALID_ARGUMENT,
                "empty path",
                detail=commit_pb2.GetTreeEntriesError(
                    path=errors_pb2.PathError(error_type=errors_pb2.PathError.ERROR_TYPE_EMPTY_PATH)
                ),
            )
        path = b"" if request.path == b"." else request.path
        async with self._reader(repo) as reader:
            tree = await self._resolve_tree(repo, reader, revision, path, request.recursive)
            if request.recursive:
                entries = await self._list_recursive(repo, tree.oid, path)
            else:
                children = await read_tree(reader, tree.oid)
                if children is None:
                    raise internal("object not found", oid=tree.oid)
                entries = [
                    GitTreeEntry(e.mode, e.kind, e.oid, go_join(path, e.path)) for e in children
                ]
            if request.sort == commit_pb2.GetTreeEntriesRequest.TREES_FIRST:
                entries.sort(key=lambda entry: SORT_RANK.get(entry.kind, 0))
            page: Sequence[GitTreeEntry] = entries
            cursor = ""
            if request.HasField("pagination_params"):
                params = request.pagination_params
                page, cursor = paginate(entries, params.page_token, params.limit, tree.oid)
            commit_oid = revision.decode("utf-8", "replace")
            with_flat_paths = not request.recursive and not request.skip_flat_paths
            sent_cursor = False

            def make(items: Sequence[commit_pb2.TreeEntry]) -> commit_pb2.GetTreeEntriesResponse:
                nonlocal sent_cursor
                response = commit_pb2.GetTreeEntriesResponse(entries=items)
                # Gitaly sends the cursor, even an empty one, in the first message only.
                if not sent_cursor:
                    response.pagination_cursor.next_cursor = cursor
                    sent_cursor = True
                return response

            batch = Batcher(call, make)
            for entry in page:
                message = commit_pb2.TreeEntry(
                    oid=entry.oid,
                    path=entry.path,
                    type=_ENTRY_TYPES.get(entry.kind, commit_pb2.TreeEntry.BLOB),
                    mode=entry.mode,
                    commit_oid=commit_oid,
                )
                if with_flat_paths:
                    message.flat_path = await flat_path(reader, entry)
                await batch.add(message)
            await batch.flush()

    async def _resolve_tree(
        self, repo: Repo, reader: ObjectReader, revision: bytes, path: bytes, recursive: bool
    ) -> ObjectInfo:
        """The tree at revision:path, or Gitaly's GetTreeEntriesError for why there is none."""
        info = await resolve_path(reader, revision, path)
        if info is None:
            # cat-file says "missing" both for a path that does not resolve and for a
            # gitlink whose commit is not here; only rev-parse tells them apart.
            resolved = await self._rev_parse(repo, revision + b":" + path)
            if resolved is None:
                code = StatusCode.NOT_FOUND if recursive else StatusCode.INVALID_ARGUMENT
                raise _resolve_error(code, "invalid revision or path", revision)
            if not path:
                raise internal("check object type: object not found")
            raise _resolve_error(StatusCode.NOT_FOUND, "revision doesn't exist", revision)
        if info.type != "tree":
            raise _resolve_error(StatusCode.INVALID_ARGUMENT, "path not treeish", revision)
        return info

    async def _rev_parse(self, repo: Repo, revision: bytes) -> str | None:
        """`git rev-parse --verify`: the object id `revision` names, or None."""
        if b"\0" in revision:
            return None
        result = await self._deps.git.run(
            GitCommand("rev-parse", flags=["--verify"], args=[arg(revision)]),
            repo_path=repo.path,
            env=repo.env(),
            check=False,
        )
        if result.returncode != 0:
            return None
        return result.stdout.decode("ascii", "replace").strip()

    async def _list_recursive(self, repo: Repo, tree_oid: str, path: bytes) -> list[GitTreeEntry]:
        """Every entry under tree `tree_oid`, depth first, trees before their contents."""
        entries: list[GitTreeEntry] = []

        async def collect(entry: GitTreeEntry) -> None:
            entries.append(
                GitTreeEntry(entry.mode, entry.kind, entry.oid, go_join(path, entry.path))
            )

        returncode = await stream_ls_tree(
            self._deps.git,
            GitCommand("ls-tree", flags=["-z", "-r", "-t"], args=[tree_oid]),
            repo_path=repo.path,
            env=repo.env(),
            on_entry=collect,
        )
        if returncode != 0:
            raise internal(f"listing tree entries: exit status {returncode}")
        return entries


def _resolve_error(code: StatusCode, message: str, revision: bytes) -> GitalyError:
    return GitalyError(
        code,
        message,
        detail=commit_pb2.GetTreeEntriesError(
            resolve_tree=errors_pb2.ResolveRevisionError(revision=revision)
        ),
    )


async def _send_blob(
    reader: ObjectReader,
    call: ServerCall,
    entry: GitTreeEntry,
    info: ObjectInfo,
    limit: int,
    max_size: int,
) -> None:
    """A blob entry: the header with the first chunk, then data-only chunks."""
    if info.type != entry.kind:
        raise internal(
            f"mismatched object type: tree-oid={entry.oid} object-oid={info.oid} "
            f"entry-type={entry.kind.upper()} object-type={info.type}"
        )
    if max_size > 0 and info.size > max_size:
        raise GitalyError(
            StatusCode.FAILED_PRECONDITION,
            f"object size ({info.size}) is bigger than the maximum allowed size ({max_size})",
        )
    wanted = min(info.size, limit) if limit > 0 else info.size
    header = commit_pb2.TreeEntryResponse(
        type=_RESPONSE_TYPES["blob"], oid=info.oid, size=info.size, mode=entry.mode
    )
    if wanted == 0:
        await call.send(header)
        return
    first = True

    async def send(chunk: bytes) -> None:
        nonlocal first
        if first:
            header.data = chunk
            await call.send(header)
            first = False
        else:
            await call.send(commit_pb2.TreeEntryResponse(data=chunk))

    streamed = await reader.stream(info.oid, send, limit=wanted, chunk_bytes=CHUNK_BYTES)
    if streamed is None:
        raise internal("object not found", oid=info.oid)

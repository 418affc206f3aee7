"""BlobService, single objects: GetBlob (by revision) and GetBlobs (by revision and path)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.objects import parse_tree
from trio_gitaly.git.revision import validate_revision
from trio_gitaly.rpc.gen.gitaly import blob_pb2, shared_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.rpc.services.blob.common import object_reader
from trio_gitaly.rpc.streaming import CHUNK_BYTES

if TYPE_CHECKING:
    from trio_gitaly.git.catfile import ObjectReader
    from trio_gitaly.rpc.call import ServerCall

_ENTRY_TYPES: Final = {"blob": shared_pb2.BLOB, "tree": shared_pb2.TREE}


class BlobReads(ServiceBase):
    """GetBlob and GetBlobs."""

    async def GetBlob(self, request: blob_pb2.GetBlobRequest, call: ServerCall) -> None:
        """Stream one blob: size and oid in the first message, data in 128 KiB chunks.

        A revision that names nothing, or names something other than a blob, gets one
        empty message, as from Gitaly.
        """
        repo = open_repo(self._deps.locator, request.repository)
        if not request.oid:
            raise invalid_argument("empty Oid")
        async with object_reader(self._deps.catfile, repo) as reader:
            try:
                info = await reader.info(request.oid)
            except GitalyError as error:
                raise _wrap_internal(error, "read object") from None
            if info is None or info.type != "blob":
                await call.send(blob_pb2.GetBlobResponse())
                return
            wanted = _read_limit(request.limit, info.size)
            header = blob_pb2.GetBlobResponse(size=info.size, oid=info.oid)
            if wanted == 0:
                await call.send(header)
                return
            first: blob_pb2.GetBlobResponse | None = header

            async def send(chunk: bytes) -> None:
                nonlocal first
                message, first = first or blob_pb2.GetBlobResponse(), None
                message.data = chunk
                await call.send(message)

            # By id, not by the client's revision: a branch may move in between.
            if await reader.stream(info.oid, send, limit=wanted, chunk_bytes=CHUNK_BYTES) is None:
                raise internal("read object: object not found")

    async def GetBlobs(self, request: blob_pb2.GetBlobsRequest, call: ServerCall) -> None:
        """For each (revision, path): the tree entry's header, then a blob's data chunks.

        Missing entries get a message with only revision and path; trees and
        submodules get a header and no data (Gitaly's behaviour).
        """
        repo = open_repo(self._deps.locator, request.repository)
        if not request.revision_paths:
            raise invalid_argument("empty RevisionPaths")
        for revision_path in request.revision_paths:
            validate_revision(revision_path.revision)
        async with object_reader(self._deps.catfile, repo) as reader:
            finder = _TreeEntryFinder(reader)
            for revision_path in request.revision_paths:
                path = revision_path.path
                if len(path) > 1:
                    path = path.rstrip(b"/")
                response = blob_pb2.GetBlobsResponse(revision=revision_path.revision, path=path)
                entry = await finder.find(revision_path.revision, path)
                if entry is None:
                    await call.send(response)
                    continue
                response.mode = entry.mode
                response.oid = entry.oid
                if entry.kind == "commit":
                    response.is_submodule = True
                    response.type = shared_pb2.COMMIT
                    await call.send(response)
                    continue
                info = await reader.info(entry.oid)
                if info is None:
                    raise internal("read object info: object not found")
                response.size = info.size
                response.type = _ENTRY_TYPES[entry.kind]
                if entry.kind != "blob":
                    await call.send(response)
                    continue
                await _send_entry_blob(reader, call, response, info.type, request.limit)


async def _send_entry_blob(
    reader: ObjectReader,
    call: ServerCall,
    response: blob_pb2.GetBlobsResponse,
    object_type: str,
    limit: int,
) -> None:
    wanted = _read_limit(limit, response.size)
    if wanted == 0:
        # Gitaly checks the object's type only when it reads data.
        await call.send(response)
        return
    if object_type != "blob":
        raise internal(f'blob got unexpected type "{object_type}"')
    first: blob_pb2.GetBlobsResponse | None = response

    async def send(chunk: bytes) -> None:
        nonlocal first
        message, first = first or blob_pb2.GetBlobsResponse(), None
        message.data = chunk
        await call.send(message)

    if await reader.stream(response.oid, send, limit=wanted, chunk_bytes=CHUNK_BYTES) is None:
        raise internal("read object: object not found")


def _read_limit(limit: int, size: int) -> int:
    """Bytes of a blob to send: all for a negative limit, else at most `limit`."""
    return size if limit < 0 or limit > size else limit


def _wrap_internal(error: GitalyError, prefix: str) -> GitalyError:
    return error.wrap(prefix) if error.code == StatusCode.INTERNAL else error


@dataclass(frozen=True)
class _Entry:
    mode: int
    kind: str
    oid: str
    path: bytes


class _TreeEntryFinder:
    """Finds the entry at revision:path, reading each directory's tree once per request.

    The rules are Gitaly's (catfile.TreeEntryFinder): the directory is `path`'s
    lexically cleaned parent, and an entry matches when its cleaned full path equals
    `path` byte for byte, so "./a", "a//b" or "a/./b" find nothing.
    """

    def __init__(self, reader: ObjectReader) -> None:
        self._reader = reader
        self._trees: dict[tuple[str, bytes], list[_Entry]] = {}

    async def find(self, revision: str, path: bytes) -> _Entry | None:
        """The entry, or None when the revision, directory or entry does not exist."""
        entries = await self._directory(revision, _go_dir(path))
        return next((entry for entry in entries if entry.path == path), None)

    async def _directory(self, revision: str, directory: bytes) -> list[_Entry]:
        key = (revision, directory)
        entries = self._trees.get(key)
        if entries is None:
            entries = await self._entries(revision, directory)
            self._trees[key] = entries
        return entries

    async def _entries(self, revision: str, directory: bytes) -> list[_Entry]:
        if directory == b".":
            directory = b""
        # git dies on "rev:../x" (relative paths need a work tree).
        if directory.startswith(b"../") or b"\0" in directory:
            return []
        if b"\n" in directory:
            # cat-file's protocol is line-based (no -z before git 2.40): find the
            # directory in its parent's entries instead of asking for "rev:dir".
            parent = await self._directory(revision, _go_dir(directory))
            entry = next((e for e in parent if e.path == directory), None)
            if entry is None or entry.kind != "tree":
                return []
            oid = entry.oid
        else:
            info = await self._reader.info(revision.encode() + b":" + directory)
            if info is None or info.type != "tree":
                return []
            oid = info.oid
        found = await self._reader.read(oid)
        if found is None or found[0].type != "tree":
            return []
        _, data = found
        try:
            parsed = parse_tree(data, len(oid) // 2)
        except ValueError as error:
            raise internal(f"read tree entries: {error}") from None
        return [
            _Entry(
                entry.mode,
                entry.kind,
                entry.oid,
                _go_clean(directory + b"/" + entry.path if directory else entry.path),
            )
            for entry in parsed
        ]


def _go_clean(path: bytes) -> bytes:
    """Go's path.Clean: like normpath, but two leading slashes collapse to one too."""
    cleaned = posixpath.normpath(path)
    if cleaned.startswith(b"//"):
        cleaned = b"/" + cleaned.lstrip(b"/")
    return cleaned


def _go_dir(path: bytes) -> bytes:
    """Go's path.Dir: everything before the last slash, cleaned ("." when none)."""
    return _go_clean(path[: path.rfind(b"/") + 1])

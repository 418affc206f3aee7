"""BlobService, listings: ListBlobs (graph walk) and ListAllBlobs (the object database)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trio_gitaly.errors import GitalyError, internal
from trio_gitaly.git.blobs import all_objects, walk_blobs
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.gen.gitaly import blob_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.rpc.services.blob.common import object_reader, validate_walk_revisions
from trio_gitaly.rpc.streaming import CHUNK_BYTES, Batcher

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from trio_gitaly.git.catfile import ObjectReader
    from trio_gitaly.rpc.call import ServerCall

    # (oid, size, data, path): one item; oid and size only on a blob's first item.
    Emit = Callable[[str, int, bytes, bytes | None], Awaitable[None]]


class BlobLists(ServiceBase):
    """ListBlobs and ListAllBlobs."""

    async def ListBlobs(self, request: blob_pb2.ListBlobsRequest, call: ServerCall) -> None:
        """The blobs reachable from the revisions, with up to bytes_limit bytes of each.

        A blob's data is split over items of at most 128 KiB: the first carries oid and
        size, the others only data (and the path, with with_paths), as from Gitaly.
        """
        repo = open_repo(self._deps.locator, request.repository)
        validate_walk_revisions(request.revisions)
        batch = Batcher[blob_pb2.ListBlobsResponse.Blob](
            call, lambda items: blob_pb2.ListBlobsResponse(blobs=items)
        )

        async def emit(oid: str, size: int, data: bytes, path: bytes | None) -> None:
            item = blob_pb2.ListBlobsResponse.Blob(oid=oid, size=size, data=data)
            if request.with_paths and path:
                item.path = path
            await batch.add(item)

        try:
            async with (
                object_reader(self._deps.catfile, repo) as reader,
                walk_blobs(self._deps.git, repo.path, repo.env(), request.revisions) as blobs,
            ):
                count = 0
                async for blob in blobs:
                    if request.bytes_limit == 0:
                        info = await reader.info(blob.oid)
                        if info is None:
                            raise internal(
                                f"retrieving object info for {go_quote(blob.oid.encode())}: "
                                "object not found"
                            )
                        await emit(info.oid, info.size, b"", blob.name)
                    else:
                        await _emit_content(reader, blob.oid, blob.name, request.bytes_limit, emit)
                    count += 1
                    if request.limit and count >= request.limit:
                        break
        except GitalyError as error:
            raise error.wrap("processing blobs") from None
        await batch.flush()

    async def ListAllBlobs(self, request: blob_pb2.ListAllBlobsRequest, call: ServerCall) -> None:
        """Every blob in the object database (quarantine included), reachable or not."""
        repo = open_repo(self._deps.locator, request.repository)
        batch = Batcher[blob_pb2.ListAllBlobsResponse.Blob](
            call, lambda items: blob_pb2.ListAllBlobsResponse(blobs=items)
        )

        async def emit(oid: str, size: int, data: bytes, path: bytes | None) -> None:
            await batch.add(blob_pb2.ListAllBlobsResponse.Blob(oid=oid, size=size, data=data))

        try:
            async with (
                object_reader(self._deps.catfile, repo) as reader,
                all_objects(self._deps.git, repo.path, repo.env()) as objects,
            ):
                count = 0
                async for info in objects:
                    if info.type != "blob":
                        continue
                    if request.bytes_limit == 0:
                        await emit(info.oid, info.size, b"", None)
                    else:
                        await _emit_content(reader, info.oid, None, request.bytes_limit, emit)
                    count += 1
                    if request.limit and count >= request.limit:
                        break
        except GitalyError as error:
            raise error.wrap("processing blobs") from None
        await batch.flush()


async def _emit_content(
    reader: ObjectReader, oid: str, path: bytes | None, bytes_limit: int, emit: Emit
) -> None:
    """Emit one blob: a header item, then items of at most `CHUNK_BYTES` data each.

    A negative `bytes_limit` sends all of the blob. An empty blob (or one cut to no
    data) still gets its header item.
    """
    info = await reader.info(oid)
    if info is None:
        raise internal("requesting object: object not found")
    header_sent = False

    async def send(chunk: bytes) -> None:
        nonlocal header_sent
        if header_sent:
            await emit("", 0, chunk, path)
        else:
            header_sent = True
            await emit(info.oid, info.size, chunk, path)

    limit = -1 if bytes_limit < 0 else bytes_limit
    if await reader.stream(info.oid, send, limit=limit, chunk_bytes=CHUNK_BYTES) is None:
        raise internal("requesting object: object not found")
    if not header_sent:
        await emit(info.oid, info.size, b"", path)

"""BlobService, Git LFS pointers: by id, by graph walk, and in the whole object database."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trio_gitaly.errors import internal, invalid_argument
from trio_gitaly.git.blobs import all_objects, walk_blobs
from trio_gitaly.git.catfile_reader import ObjectTooLargeError
from trio_gitaly.git.lfs import LFS_POINTER_MAX_BYTES, parse_lfs_pointer
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.gen.gitaly import blob_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.rpc.services.blob.common import object_reader, validate_walk_revisions
from trio_gitaly.rpc.streaming import Batcher

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from google.protobuf.message import Message

    from trio_gitaly.git.catfile import ObjectReader
    from trio_gitaly.rpc.call import ServerCall


class LFSPointers(ServiceBase):
    """GetLFSPointers, ListLFSPointers and ListAllLFSPointers."""

    async def GetLFSPointers(
        self, request: blob_pb2.GetLFSPointersRequest, call: ServerCall
    ) -> None:
        """Those of the given blob ids that are LFS pointers, in request order.

        Ids of other objects are skipped; an id that names nothing fails the call
        (INTERNAL, as in Gitaly).
        """
        repo = open_repo(self._deps.locator, request.repository)
        if not request.blob_ids:
            raise invalid_argument("empty BlobIds")
        batch = _pointer_batcher(call, blob_pb2.GetLFSPointersResponse)
        async with object_reader(self._deps.catfile, repo) as reader:
            for blob_id in request.blob_ids:
                info = await reader.info(blob_id)
                if info is None:
                    raise internal(
                        f"retrieving object info for {go_quote(blob_id.encode())}: object not found"
                    )
                if info.type != "blob" or info.size > LFS_POINTER_MAX_BYTES:
                    continue
                pointer = await _read_pointer(reader, info.oid)
                if pointer is not None:
                    await batch.add(pointer)
        await batch.flush()

    async def ListLFSPointers(
        self, request: blob_pb2.ListLFSPointersRequest, call: ServerCall
    ) -> None:
        """The LFS pointers reachable from the revisions (pseudo-revisions allowed).

        Only blobs smaller than `LFS_POINTER_MAX_BYTES` are looked at (git's
        `--filter=blob:limit`, which excludes a blob of exactly that size).
        """
        repo = open_repo(self._deps.locator, request.repository)
        validate_walk_revisions(request.revisions)
        batch = _pointer_batcher(call, blob_pb2.ListLFSPointersResponse)
        async with (
            object_reader(self._deps.catfile, repo) as reader,
            walk_blobs(
                self._deps.git,
                repo.path,
                repo.env(),
                request.revisions,
                smaller_than=LFS_POINTER_MAX_BYTES,
            ) as blobs,
        ):
            count = 0
            async for blob in blobs:
                pointer = await _read_pointer(reader, blob.oid)
                if pointer is None:
                    continue
                await batch.add(pointer)
                count += 1
                if 0 < request.limit <= count:
                    break
        await batch.flush()

    async def ListAllLFSPointers(
        self, request: blob_pb2.ListAllLFSPointersRequest, call: ServerCall
    ) -> None:
        """Every LFS pointer in the object database (quarantine included), reachable or not."""
        repo = open_repo(self._deps.locator, request.repository)
        batch = _pointer_batcher(call, blob_pb2.ListAllLFSPointersResponse)
        async with (
            object_reader(self._deps.catfile, repo) as reader,
            all_objects(self._deps.git, repo.path, repo.env()) as objects,
        ):
            count = 0
            async for info in objects:
                if info.type != "blob" or info.size > LFS_POINTER_MAX_BYTES:
                    continue
                pointer = await _read_pointer(reader, info.oid)
                if pointer is None:
                    continue
                await batch.add(pointer)
                count += 1
                if 0 < request.limit <= count:
                    break
        await batch.flush()


def _pointer_batcher(
    call: ServerCall, response: Callable[..., Message]
) -> Batcher[blob_pb2.LFSPointer]:
    def make(items: Sequence[blob_pb2.LFSPointer]) -> Message:
        return response(lfs_pointers=items)

    return Batcher(call, make)


async def _read_pointer(reader: ObjectReader, oid: str) -> blob_pb2.LFSPointer | None:
    """The LFS pointer in blob `oid`, or None when it is not one.

    Cancellation: leaving mid-request breaks the reader (see `ObjectReader.read`).
    """
    try:
        found = await reader.read(oid, max_size=LFS_POINTER_MAX_BYTES)
    except ObjectTooLargeError:
        # The listings filter by size first; nothing larger is ever a pointer here.
        return None
    if found is None:
        raise internal("requesting object: object not found")
    info, data = found
    pointer = parse_lfs_pointer(data)
    if pointer is None:
        return None
    return blob_pb2.LFSPointer(
        size=len(data),
        data=data,
        oid=info.oid,
        file_oid=pointer.file_oid,
        file_size=pointer.file_size,
    )

"""gitaly.BlobService: blobs and LFS pointers."""

from __future__ import annotations

from trio_gitaly.rpc.services import ServiceBase


class BlobService(ServiceBase):
    """BlobService RPCs (being implemented; until then they answer UNIMPLEMENTED)."""

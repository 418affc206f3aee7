"""gitaly.BlobService: single blobs (reads.py), listings (lists.py), LFS pointers.

Objects are read through the cat-file cache and listed by one streaming git process
(trio_gitaly.git.blobs); no answer is ever held whole in memory.
"""

from __future__ import annotations

from trio_gitaly.rpc.services.blob.lfs_pointers import LFSPointers
from trio_gitaly.rpc.services.blob.lists import BlobLists
from trio_gitaly.rpc.services.blob.reads import BlobReads


class BlobService(BlobReads, BlobLists, LFSPointers):
    """Every BlobService RPC: four for blobs, three for LFS pointers."""

"""The per-storage `.gitaly-metadata` file: a filesystem id written once and kept forever.

ServerService.ServerInfo reports the id per storage as `filesystem_id`; clients compare ids
to spot storages that share one filesystem, so the id must never change once written. The
content matches Gitaly's encoder byte for byte: `{"gitaly_filesystem_id":"<uuid4>"}\\n`.
"""

from __future__ import annotations

import os
import uuid
from typing import Final

import msgspec

from trio_gitaly.storage.durable import replace_file, sync_dir

METADATA_FILE: Final = ".gitaly-metadata"


class _Metadata(msgspec.Struct):
    gitaly_filesystem_id: str = ""


_decoder: Final = msgspec.json.Decoder(_Metadata)


def ensure_metadata(storage_path: str) -> str:
    """Write the metadata file in `storage_path` unless present; return the filesystem id.

    The file appears atomically (temp file, fsync, rename, fsync of the directory), so a
    crash leaves either no file or a complete one.

    Raises:
        OSError: the file could not be written. Gitaly logs this and carries on; so
            should the caller.
    """
    path = os.path.join(storage_path, METADATA_FILE)
    if os.path.lexists(path):
        # Never rewrite an existing file, even a corrupt one: a changed id would make
        # clients believe the storage moved to another filesystem.
        return read_filesystem_id(storage_path)

    filesystem_id = str(uuid.uuid4())
    content = msgspec.json.encode(_Metadata(filesystem_id)) + b"\n"
    replace_file(path, content)
    sync_dir(storage_path)
    return filesystem_id


def read_filesystem_id(storage_path: str) -> str:
    """Return the filesystem id in `storage_path`'s metadata file, or "" if unusable."""
    try:
        with open(os.path.join(storage_path, METADATA_FILE), "rb") as f:
            # The file is one short line; the cap keeps a corrupt giant from being read.
            data = f.read(4096)
        return _decoder.decode(data).gitaly_filesystem_id
    except (OSError, msgspec.DecodeError):
        return ""

"""The `.gitaly-metadata` file: written once, atomically, never rewritten."""

from __future__ import annotations

import json
import os
import stat
import uuid
from typing import TYPE_CHECKING

import pytest

from trio_gitaly.storage.metadata import METADATA_FILE, ensure_metadata, read_filesystem_id

if TYPE_CHECKING:
    from pathlib import Path


def test_first_call_writes_a_uuid4(tmp_path: Path) -> None:
    filesystem_id = ensure_metadata(str(tmp_path))

    raw = (tmp_path / METADATA_FILE).read_bytes()
    # Byte-for-byte what Gitaly's json.Encoder writes: compact JSON and a newline.
    assert raw == b'{"gitaly_filesystem_id":"' + filesystem_id.encode() + b'"}\n'
    assert json.loads(raw) == {"gitaly_filesystem_id": filesystem_id}
    assert uuid.UUID(filesystem_id).version == 4
    assert read_filesystem_id(str(tmp_path)) == filesystem_id


def test_file_is_private_and_no_temp_file_remains(tmp_path: Path) -> None:
    ensure_metadata(str(tmp_path))
    assert stat.S_IMODE(os.stat(tmp_path / METADATA_FILE).st_mode) == 0o600
    assert os.listdir(tmp_path) == [METADATA_FILE]


def test_id_is_stable_across_calls(tmp_path: Path) -> None:
    first = ensure_metadata(str(tmp_path))
    before = os.stat(tmp_path / METADATA_FILE)
    assert ensure_metadata(str(tmp_path)) == first
    assert ensure_metadata(str(tmp_path)) == first
    after = os.stat(tmp_path / METADATA_FILE)
    # Same inode: the file was not replaced by a rename either.
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_other_storages_get_other_ids(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert ensure_metadata(str(tmp_path / "a")) != ensure_metadata(str(tmp_path / "b"))


def test_existing_file_is_kept(tmp_path: Path) -> None:
    content = b'{"gitaly_filesystem_id": "written-by-gitaly"}\n'
    (tmp_path / METADATA_FILE).write_bytes(content)
    assert ensure_metadata(str(tmp_path)) == "written-by-gitaly"
    assert (tmp_path / METADATA_FILE).read_bytes() == content


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b'{"gitaly_filesystem_id": "trunc', id="truncated"),
        pytest.param(b"[]", id="array"),
        pytest.param(b"{}", id="no-key"),
        pytest.param(b'{"gitaly_filesystem_id": 5}', id="not-a-string"),
        pytest.param(b"\xff\xfe", id="binary"),
    ],
)
def test_corrupt_file_reads_empty_and_is_not_overwritten(tmp_path: Path, content: bytes) -> None:
    (tmp_path / METADATA_FILE).write_bytes(content)
    assert read_filesystem_id(str(tmp_path)) == ""
    # A rewrite would give the storage a new identity; Gitaly leaves the file alone too.
    assert ensure_metadata(str(tmp_path)) == ""
    assert (tmp_path / METADATA_FILE).read_bytes() == content


def test_unknown_keys_are_ignored(tmp_path: Path) -> None:
    (tmp_path / METADATA_FILE).write_text('{"gitaly_filesystem_id": "x", "other": 1}')
    assert read_filesystem_id(str(tmp_path)) == "x"


def test_absent_or_unreadable_reads_empty(tmp_path: Path) -> None:
    assert read_filesystem_id(str(tmp_path)) == ""
    assert read_filesystem_id(str(tmp_path / "no-such-storage")) == ""
    (tmp_path / METADATA_FILE).mkdir()
    assert read_filesystem_id(str(tmp_path)) == ""


def test_missing_storage_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ensure_metadata(str(tmp_path / "no-such-storage"))

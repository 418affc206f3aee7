"""Facts about the filesystem a storage lives on, for ServerInfo and DiskStatistics."""

from __future__ import annotations

import os
from dataclasses import dataclass

MOUNTS_FILE = "/proc/self/mounts"


@dataclass(frozen=True)
class StorageStatus:
    """What ServerInfo reports for one storage."""

    readable: bool
    writeable: bool
    fs_type: str


def storage_status(path: str) -> StorageStatus:
    """Access and filesystem type of a storage directory (blocking: run in a thread)."""
    return StorageStatus(
        readable=os.access(path, os.R_OK | os.X_OK),
        writeable=os.access(path, os.W_OK | os.X_OK),
        fs_type=filesystem_type(path),
    )


def filesystem_type(path: str) -> str:
    """The type of the filesystem holding `path` ("ext4", "xfs", "tmpfs"), or "unknown".

    Python has no statfs(2); the kernel's mount table says the same: the type of the
    longest mount point that contains the path.
    """
    try:
        real = os.path.realpath(path)
        with open(MOUNTS_FILE, encoding="utf-8") as mounts:
            entries = [line.split() for line in mounts]
    except OSError:
        return "unknown"
    best, fs_type = -1, "unknown"
    for entry in entries:
        if len(entry) < 3:
            continue
        # The kernel escapes spaces and other bytes in mount points as octal.
        mount_point = entry[1].encode().decode("unicode_escape")
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > best:
            best, fs_type = len(mount_point), entry[2]
    return fs_type


def disk_usage(path: str) -> tuple[int, int]:
    """(available, used) bytes on the filesystem holding `path`, as `df` counts them."""
    stats = os.statvfs(path)
    available = stats.f_bavail * stats.f_frsize
    used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
    return available, used

"""cgroupfs as files: the mount table, reading and writing control files, removing groups.

Everything here is blocking and cheap (a few small reads or writes on a pseudo-filesystem);
errors surface as `OSError` for the callers to turn into a reason or a log line.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Final

LOG = logging.getLogger("trio_gitaly.cgroups")

PROCS_FILE: Final = "cgroup.procs"
# A process that forks while it is being moved out leaves its child behind; a few rounds
# catch those before rmdir gives up with EBUSY.
_EVICT_ROUNDS: Final = 3


def read_text(path: str) -> str:
    """A control file's content, without the trailing newline."""
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def read_int(path: str) -> int:
    """A control file holding one integer."""
    return int(read_text(path))


def read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed control file (`cpu.stat`, `memory.stat`): "key value" per line."""
    values = {}
    for line in read_text(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def write_value(path: str, value: str) -> None:
    """Write one value to a control file in a single write(2), as the kernel wants it."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def procs(group_dir: str) -> list[int]:
    """The pids in one cgroup (not its descendants)."""
    return [int(pid) for pid in read_text(os.path.join(group_dir, PROCS_FILE)).split()]


def remove_tree(path: str, evict_to: str | None) -> bool:
    """Remove the cgroup at `path` and every group below it, children first.

    Args:
        path: the cgroup directory; a missing one counts as removed.
        evict_to: a cgroup directory whose `cgroup.procs` takes the processes still in the
            tree, so that rmdir can succeed; None leaves them, and their groups, in place.

    Returns:
        Whether everything is gone. Each failure is logged with the directory it hit.
    """
    if not os.path.isdir(path):
        return True
    removed_all = True
    # Control files cannot be unlinked and need not be: rmdir takes a cgroup with them.
    for directory, _subdirs, _files in os.walk(path, topdown=False):
        try:
            if evict_to is not None:
                _evict(directory, evict_to)
            os.rmdir(directory)
        except FileNotFoundError:
            continue
        except OSError as exc:
            removed_all = False
            LOG.warning(
                "failed removing cgroup",
                extra={"fields": {"path": directory, "error": exc.strerror or str(exc)}},
            )
    return removed_all


def _evict(group_dir: str, target_dir: str) -> None:
    target = os.path.join(target_dir, PROCS_FILE)
    for _round in range(_EVICT_ROUNDS):
        pids = procs(group_dir)
        if not pids:
            return
        LOG.warning(
            "moving processes out of a cgroup being removed",
            extra={"fields": {"path": group_dir, "pids": pids}},
        )
        for pid in pids:
            try:
                write_value(target, str(pid))
            except OSError as exc:
                # Gone in the meantime: nothing left to move.
                if exc.errno != errno.ESRCH:
                    raise

"""Removing the `gitaly-<pid>` groups that servers which are gone left behind.

The rules are Gitaly's `PruneOldGitalyProcessDirectories`, as for runtime directories: a
group is stale when its pid is 0 or names no process (or one of another user: the pid
was reused). Unlike runtime directories, a hierarchy root is full of control files, so
files are passed over silently.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from typing import TYPE_CHECKING, Final

import trio

from trio_gitaly.limits.cgroups._files import remove_tree
from trio_gitaly.limits.cgroups._hierarchy import Unavailable, detect, root_group

if TYPE_CHECKING:
    from trio_gitaly.config_limits import CgroupsConfig

LOG = logging.getLogger("trio_gitaly.cgroups")

# ASCII digits only, as for runtime directories: int() would also take "+5" or " 5".
_PROCESS_GROUP: Final = re.compile(r"gitaly-([0-9]+)")
# pid_t is a signed 32-bit int; os.kill raises OverflowError beyond it.
_MAX_PID: Final = 2**31 - 1


async def prune_stale_groups(
    config: CgroupsConfig, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Remove stale `gitaly-<pid>` groups under the hierarchy root, then return.

    A worker: reports started at once, then works in a thread. Does nothing when cgroups
    are off or the hierarchy cannot be found (the manager logs why). Each removal is logged
    at info, each failure at error; nothing is raised for them.

    Cancellation:
        Abandons the thread, which finishes the removal it is in (a few rmdirs) and stops.
    """
    task_status.started()
    if not config.enabled:
        return
    await trio.to_thread.run_sync(
        functools.partial(prune_stale_groups_sync, config), abandon_on_cancel=True
    )


def prune_stale_groups_sync(config: CgroupsConfig) -> None:
    """The blocking body of `prune_stale_groups`."""
    try:
        hierarchy = detect(config)
    except Unavailable:
        return
    for directory in hierarchy.dirs(root_group(config)):
        try:
            with os.scandir(directory) as it:
                entries = [entry for entry in it if entry.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            continue
        except OSError as exc:
            fields = {"path": directory, "error": str(exc)}
            LOG.error("failed to clean up cgroups", extra={"fields": fields})
            continue
        for entry in entries:
            _prune_entry(entry.path, entry.name)


def _prune_entry(path: str, name: str) -> None:
    match = _PROCESS_GROUP.fullmatch(name)
    if match is None or int(match[1]) > _MAX_PID:
        LOG.error(
            "could not prune entry",
            extra={
                "fields": {
                    "path": path,
                    "error": f'gitaly process directory contains an unexpected directory: "{name}"',
                }
            },
        )
        return
    pid = int(match[1])
    if pid == os.getpid():
        return
    if pid != 0:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            pass
        except OSError as exc:
            LOG.error("could not prune entry", extra={"fields": {"path": path, "error": str(exc)}})
            return
        else:
            return  # alive: a sibling server's groups
    # No eviction: processes still inside belong to a server that is gone, and keep their
    # limits until they end; the next start tries again.
    if remove_tree(path, evict_to=None):
        message = (
            "removed gitaly directory with no pid"
            if pid == 0
            else "removed leftover gitaly process directory"
        )
        LOG.info(message, extra={"fields": {"path": path}})

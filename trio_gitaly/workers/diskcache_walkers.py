"""The disk cache's housekeeping: a cold cache at start, then walkers that expire it.

Before reporting started, the worker moves each unique storage path's `+gitaly/cache`
to `+gitaly/tmp/diskcache<random>/moved`: one rename, so start-up stays fast, and no
answer cached by an earlier run (whose repositories may have changed since) is ever
served. The moved trees are deleted in the background.

Then two walkers per storage path, over `+gitaly/cache` and `+gitaly/state`, walk at
once and every `WALK_INTERVAL_S`: files whose mtime is `STALE_AGE_S` old go (old entries,
old generations, pending leases of mutations that never ended), then directories left
empty, the root included. Removing an old `latest` starts a new generation, so no entry
is found much beyond an hour after it was written.

The walk works inline, one directory at a time, with a checkpoint every
`WALK_BATCH_ENTRIES` entries and a short pause per directory (Gitaly's 100 µs), so the
event loop is never held for long and the disk is not hammered.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import posixpath
import tempfile
import time
from typing import TYPE_CHECKING, Final

import trio

from trio_gitaly import tree_state
from trio_gitaly.storage.diskcache_keys import STALE_AGE_S, cache_dir, state_dir

if TYPE_CHECKING:
    from trio_gitaly.storage.diskcache import CacheMetrics, DiskCache
    from trio_gitaly.storage.locator import Locator, Storage

LOG = logging.getLogger("trio_gitaly.diskcache")

#: Time between two walks of one directory tree (Gitaly: 10 minutes).
WALK_INTERVAL_S: Final = 10 * 60.0
#: Pause after each directory walked (Gitaly: 100 µs), to relieve the disk.
WALK_PAUSE_S: Final = 100e-6
#: Entries handled between two checkpoints within one directory.
WALK_BATCH_ENTRIES: Final = 256
#: Pause before a walker that crashed starts over (Gitaly's dontpanic: one minute).
WALKER_RESTART_DELAY_S: Final = 60.0
#: Prefix of the directory a start moves the old cache into, under `+gitaly/tmp`.
MOVED_PREFIX: Final = "diskcache"


async def run(
    cache: DiskCache, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Empty the caches, report started, then delete the old caches and walk forever.

    Raises:
        OSError: a cache directory could not be moved aside (before reporting started:
            the server would serve answers of an earlier run).

    Cancellation: stops between two directories; a walk in progress is abandoned.
    """
    storages = _unique_paths(cache.locator.storages)
    moved = [(storage, move_aside(cache.locator, storage)) for storage in storages]
    async with trio.open_nursery() as nursery:
        for storage, tmp in moved:
            if tmp is not None:
                nursery.start_soon(_clear, storage, tmp)
        for storage in storages:
            for root in (cache_dir(storage.path), state_dir(storage.path)):
                nursery.start_soon(_walk_loop, root, cache.metrics)
        task_status.started()


def move_aside(locator: Locator, storage: Storage) -> str | None:
    """Move `storage`'s cache directory into a new `+gitaly/tmp/diskcache*` directory.

    Returns that directory, or None when there was no cache directory. Blocking (a few
    directory operations).

    Raises:
        GitalyError: the storage directory is missing.
        OSError: the directory could not be moved.
    """
    fields = {"storage": storage.name}
    LOG.info("clearing disk cache object folder", extra={"fields": fields})
    cache = cache_dir(storage.path)
    if not os.path.lexists(cache):
        LOG.info(
            "disk cache object folder doesn't exist, no need to remove",
            extra={"fields": {**fields, "cache_directory": cache}},
        )
        return None
    tmp = tempfile.mkdtemp(prefix=MOVED_PREFIX, dir=locator.tmp_dir(storage.name))
    LOG.info(
        "moving disk cache object folder", extra={"fields": {**fields, "cache_directory": tmp}}
    )
    os.rename(cache, posixpath.join(tmp, "moved"))
    return tmp


async def clean_walk(root: str, stale_before: float, metrics: CacheMetrics | None) -> None:
    """Remove the files under `root` with an mtime up to `stale_before` (epoch seconds),
    then the directories left empty, `root` included. A missing `root` is fine.

    `metrics` (None: not counted) gets Gitaly's walker counters.

    Raises:
        OSError: a directory could not be read or a file not removed; logged (walker
            error) before it is raised, the walk stops there.

    Cancellation: raises Cancelled between two batches of entries.
    """
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _walk_error(metrics, exc, root, "unable to stat directory") from None
    for index, entry in enumerate(entries, 1):
        if index % WALK_BATCH_ENTRIES == 0:
            await trio.lowlevel.checkpoint()
        if entry.is_dir(follow_symlinks=False):
            await clean_walk(entry.path, stale_before, metrics)
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime > stale_before:
                continue  # still fresh
            os.unlink(entry.path)
        except FileNotFoundError:
            continue  # removed meanwhile (a lease ended, an entry was replaced)
        except OSError as exc:
            raise _walk_error(metrics, exc, entry.path, "unable to remove file") from None
        if metrics is not None:
            metrics.walker_removals.inc()
    await _remove_if_empty(root, metrics)
    await trio.sleep(WALK_PAUSE_S)


async def _remove_if_empty(path: str, metrics: CacheMetrics | None) -> None:
    try:
        if os.listdir(path):
            return
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _walk_error(metrics, exc, path, "unable to stat directory after walk") from None
    if metrics is not None:
        metrics.walker_empty_dirs.inc()
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno == errno.ENOTEMPTY:
            return  # a lease or an entry was created in it meanwhile
        raise _walk_error(metrics, exc, path, "unable to remove empty directory") from None
    if metrics is not None:
        metrics.walker_empty_dir_removals.inc()
        metrics.walker_removals.inc()


def _walk_error(metrics: CacheMetrics | None, exc: OSError, path: str, message: str) -> OSError:
    if metrics is not None:
        metrics.walker_errors.inc()
    LOG.warning(message, extra={"fields": {"path": path, "error": str(exc)}})
    return exc


async def _walk_loop(root: str, metrics: CacheMetrics) -> None:
    fields = {"path": root}
    LOG.info("Starting file walker", extra={"fields": {**fields, "disk_cache_path": root}})
    next_walk = trio.current_time()
    while True:
        try:
            await clean_walk(root, time.time() - STALE_AGE_S, metrics)
        except OSError as exc:
            LOG.error("disk cache cleanup failed", extra={"fields": {**fields, "error": str(exc)}})
        except Exception as exc:
            # A bug in one walk must not stop the server: start over after a pause.
            LOG.error("disk cache walker crashed", exc_info=exc, extra={"fields": fields})
            await trio.sleep(WALKER_RESTART_DELAY_S)
            continue
        # On the interval's grid, skipping the ticks a long walk overran.
        now = trio.current_time()
        while next_walk <= now:
            next_walk += WALK_INTERVAL_S
        # Every walker of the job reports to the job's node: the latest walk counts.
        tree_state.worker_ran(next_in_s=next_walk - now)
        await trio.sleep_until(next_walk)


async def _clear(storage: Storage, tmp: str) -> None:
    fields = {"storage": storage.name, "cache_directory": tmp}
    start = time.perf_counter()
    try:
        await clean_walk(tmp, math.inf, None)
    except OSError as exc:
        LOG.error(
            "unable to remove disk cache objects", extra={"fields": {**fields, "error": str(exc)}}
        )
        return
    duration_ms = round((time.perf_counter() - start) * 1000)
    LOG.info(
        "cleared all cache object files",
        extra={"fields": {**fields, "clear_duration_ms": duration_ms}},
    )


def _unique_paths(storages: tuple[Storage, ...]) -> list[Storage]:
    # Several storage names on one path share its cache: walk it once, under the
    # alphabetically first name (as the tempdir cleaner names it).
    by_path: dict[str, Storage] = {}
    for storage in sorted(storages, key=lambda s: s.name):
        by_path.setdefault(storage.path, storage)
    return list(by_path.values())

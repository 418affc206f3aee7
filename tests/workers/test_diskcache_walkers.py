"""The disk cache worker: the cache emptied at start, and walkers expiring old files.

Timed behaviour runs on trio's MockClock (autojump); file ages are set with os.utime.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable

import pytest
import trio
from prometheus_client import CollectorRegistry

from trio_gitaly.storage.diskcache import DiskCache
from trio_gitaly.storage.diskcache_keys import STALE_AGE_S
from trio_gitaly.storage.locator import Locator, Storage
from trio_gitaly.workers import diskcache_walkers
from trio_gitaly.workers.diskcache_walkers import WALK_INTERVAL_S, clean_walk, run

#: Upper bound (virtual seconds) for a background step to finish under the MockClock.
SETTLE_S = 5.0


@pytest.fixture
def storage(tmp_path: object) -> str:
    return str(tmp_path)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def cache(storage: str, registry: CollectorRegistry) -> DiskCache:
    return DiskCache(Locator([Storage("default", storage), Storage("alias", storage)]), registry)


def write(path: str, *, old: bool = False) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")
    if old:
        make_old(path)
    return path


def make_old(path: str) -> None:
    mtime = time.time() - STALE_AGE_S - 60
    os.utime(path, (mtime, mtime))


def sample(registry: CollectorRegistry, name: str) -> float:
    return registry.get_sample_value(name) or 0.0


async def until(condition: Callable[[], bool]) -> None:
    """Wait (virtual time, in small steps) until `condition` holds."""
    with trio.fail_after(SETTLE_S):
        while not condition():
            await trio.sleep(0.01)


async def test_clean_walk_removes_stale_files_and_empty_dirs(
    storage: str, registry: CollectorRegistry, cache: DiskCache
) -> None:
    root = os.path.join(storage, "+gitaly", "cache")
    old = write(os.path.join(root, "ab", "old"), old=True)
    fresh = write(os.path.join(root, "ab", "fresh"))
    lonely = write(os.path.join(root, "cd", "lonely"), old=True)
    await clean_walk(root, time.time() - STALE_AGE_S, cache.metrics)
    assert not os.path.exists(old)
    assert os.path.exists(fresh)
    assert not os.path.exists(os.path.dirname(lonely))
    # Two files and the empty directory "cd".
    assert sample(registry, "gitaly_diskcache_walker_removal_total") == 3
    assert sample(registry, "gitaly_diskcache_walker_empty_dir_removal_total") == 1

    os.unlink(fresh)
    await clean_walk(root, time.time() - STALE_AGE_S, cache.metrics)
    assert not os.path.exists(root)


async def test_clean_walk_of_a_missing_root_is_fine(storage: str) -> None:
    await clean_walk(os.path.join(storage, "missing"), math.inf, None)


async def test_start_moves_the_cache_aside_and_deletes_it(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, storage: str, cache: DiskCache
) -> None:
    entry = write(os.path.join(storage, "+gitaly", "cache", "ab", "cdef"))
    tmp = os.path.join(storage, "+gitaly", "tmp")
    await nursery.start(run, cache)
    # Gone from the cache the moment the worker reports started.
    assert not os.path.exists(entry)
    assert not os.path.exists(os.path.join(storage, "+gitaly", "cache"))
    # Moved once although two storage names share the path, then deleted.
    await until(lambda: os.listdir(tmp) == [])


async def test_start_without_a_cache_directory(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, storage: str, cache: DiskCache
) -> None:
    await nursery.start(run, cache)
    assert not os.path.exists(os.path.join(storage, "+gitaly", "tmp"))


async def test_walkers_expire_cache_and_state_every_interval(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    storage: str,
    cache: DiskCache,
    registry: CollectorRegistry,
) -> None:
    start = trio.current_time()
    await nursery.start(run, cache)
    # The first walks run at start; then every walker waits for the interval.
    await trio.testing.wait_all_tasks_blocked()
    cache_root = os.path.join(storage, "+gitaly", "cache")
    state_root = os.path.join(storage, "+gitaly", "state", "project.git")
    # Written after the first walks: what the next ones see.
    old_entry = write(os.path.join(cache_root, "ab", "old"), old=True)
    new_entry = write(os.path.join(cache_root, "ab", "new"))
    old_latest = write(os.path.join(state_root, "latest"), old=True)
    old_pending = write(os.path.join(state_root, "pending", "lease-1"), old=True)
    live_pending = write(os.path.join(state_root, "pending", "lease-2"))
    await trio.sleep_until(start + WALK_INTERVAL_S - 1)
    assert all(map(os.path.exists, (old_entry, old_latest, old_pending)))
    await until(lambda: not os.path.exists(old_entry) and not os.path.exists(old_pending))
    assert trio.current_time() - start >= WALK_INTERVAL_S
    assert not os.path.exists(old_latest)
    assert os.path.exists(new_entry)
    assert os.path.exists(live_pending)

    # A file turns stale: the walk after the next interval removes it.
    make_old(new_entry)
    await trio.sleep_until(start + 2 * WALK_INTERVAL_S - 1)
    assert os.path.exists(new_entry)
    await until(lambda: not os.path.exists(cache_root))
    assert trio.current_time() - start >= 2 * WALK_INTERVAL_S
    assert sample(registry, "gitaly_diskcache_walker_removal_total") >= 5


async def test_walker_errors_are_counted_and_walking_goes_on(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    storage: str,
    cache: DiskCache,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_gitaly.diskcache")
    # A state "directory" that is a file: every walk of it fails to list it.
    write(os.path.join(storage, "+gitaly", "state"))
    start = trio.current_time()
    await nursery.start(run, cache)
    await trio.testing.wait_all_tasks_blocked()
    assert sample(registry, "gitaly_diskcache_walker_error_total") == 1
    await trio.sleep_until(start + WALK_INTERVAL_S + 1)
    assert sample(registry, "gitaly_diskcache_walker_error_total") == 2
    messages = [record.getMessage() for record in caplog.records]
    # One walker per tree of the one storage path (two storage names share it).
    assert messages.count("Starting file walker") == 2
    assert messages.count("disk cache cleanup failed") == 2


def test_policy_values() -> None:
    # Gitaly's cadence: walk every 10 minutes, expire after an hour.
    assert (diskcache_walkers.WALK_INTERVAL_S, STALE_AGE_S) == (600.0, 3600.0)

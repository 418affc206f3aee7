"""Gitaly's disk cache of RPC answers, invalidated by leases that mutating RPCs hold.

Per storage, an answer lives in `+gitaly/cache/<key[:2]>/<key[2:]>`, the whole response
body. The key (diskcache_keys.py) hashes the server version, the method, the
repository's generation, the serialized request and the feature flags, so an entry is
only ever found under the generation it was computed in; leases replace generations
around every mutation. Entries are written to a temporary file and renamed into place.
The walkers (workers/diskcache_walkers.py) expire entries and state files after an hour.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import tempfile
from collections.abc import AsyncIterator
from typing import BinaryIO

import trio
from prometheus_client import CollectorRegistry, Counter

from trio_gitaly.errors import GitalyError
from trio_gitaly.storage.diskcache_keys import (
    CacheKey,
    Lease,
    MissingLeaseFileError,
    PendingLeaseError,
    cache_dir,
    compose_key,
    current_generation,
    pending_leases,
    retry_vanished_dir,
    state_dir,
)
from trio_gitaly.storage.locator import Locator, RepositoryLike

LOG = logging.getLogger("trio_gitaly.diskcache")


class CacheMetrics:
    """Gitaly's disk cache, cache invalidator and info-refs cache counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, help_text, labels, registry=registry)

        self.requests = counter("gitaly_diskcache_requests", "Total number of disk cache requests")
        self.misses = counter("gitaly_diskcache_miss", "Total number of disk cache misses")
        self.bytes_stored = counter(
            "gitaly_diskcache_bytes_stored", "Total number of disk cache bytes stored"
        )
        self.bytes_fetched = counter(
            "gitaly_diskcache_bytes_fetched", "Total number of disk cache bytes fetched"
        )
        self.bytes_loser = counter(
            "gitaly_diskcache_bytes_loser", "Total number of disk cache bytes from losing writes"
        )
        self.errors = counter(
            "gitaly_diskcache_errors",
            "Total number of errors encountered by disk cache",
            ("error",),
        )
        self.walker_removals = counter(
            "gitaly_diskcache_walker_removal",
            "Total number of files and empty directories the walkers removed",
        )
        self.walker_errors = counter(
            "gitaly_diskcache_walker_error", "Total number of errors during diskcache walks"
        )
        self.walker_empty_dirs = counter(
            "gitaly_diskcache_walker_empty_dir", "Total number of empty directories encountered"
        )
        self.walker_empty_dir_removals = counter(
            "gitaly_diskcache_walker_empty_dir_removal", "Total number of empty directories removed"
        )
        self.invalidator_errors = counter(
            "gitaly_cacheinvalidator_error",
            "Total number of cache invalidation errors by method",
            ("method",),
        )
        self.inforef_attempts = counter(
            "gitaly_inforef_cache_attempt",
            "Total number of smarthttp info-ref RPCs accessing the cache",
        )
        self.inforef_hit_miss = counter(
            "gitaly_inforef_cache_hit_miss",
            "Total number of smarthttp info-ref RPC hit/miss/err cache accesses",
            ("type",),
        )


class DiskCache:
    """The disk cache of every storage: lookups, entries being written, and leases.

    Lookups and leases touch a few small files, inline; entry data goes through worker
    threads (`EntryWriter`, and the readers of `open_entry`'s file).
    """

    def __init__(self, locator: Locator, registry: CollectorRegistry) -> None:
        self.locator = locator
        self.metrics = CacheMetrics(registry)
        # entry path -> writers in flight: the last one to finish wins, the others' bytes
        # are counted as "loser" bytes.
        self._writers: dict[str, int] = {}

    def entry_path(self, key: CacheKey) -> str:
        """Where the answer for `key` lives in the repository's current generation.

        Creates the generation on first use. Blocking (small files).

        Raises:
            PendingLeaseError: a mutation of the repository is in progress.
            GitalyError: the repository names no valid storage or path.
            OSError: the state directory could not be read or written.
        """
        state = self._state_path(key.repository)
        if pending_leases(state):
            self._count_error("ErrPendingExists")
            raise PendingLeaseError()
        digest = compose_key(current_generation(state), key.method, key.request)
        storage = self.locator.storage_path(key.repository.storage_name)
        return posixpath.join(cache_dir(storage), digest[:2], digest[2:])

    def open_entry(self, key: CacheKey) -> tuple[str, BinaryIO | None]:
        """The entry's path, and the entry opened for reading (None on a miss).

        Raises what `entry_path` raises, or OSError when the entry cannot be opened; both
        count as misses.
        """
        self.metrics.requests.inc()
        try:
            path = self.entry_path(key)
            try:
                entry = open(path, "rb")  # noqa: SIM115 (the caller streams and closes it)
            except FileNotFoundError:
                self.metrics.misses.inc()
                return path, None
        except (PendingLeaseError, GitalyError, OSError):
            self.metrics.misses.inc()
            raise
        LOG.info("getting stream", extra={"fields": {"stream_path": path}})
        return path, entry

    def new_entry(self, path: str) -> EntryWriter:
        """A writer for the entry at `path` (from `open_entry`'s miss); blocking (small).

        Raises:
            OSError: the temporary file could not be created.
        """
        LOG.info("putting stream", extra={"fields": {"stream_path": path}})
        directory = posixpath.dirname(path)
        fd, temporary = retry_vanished_dir(
            directory,
            lambda: tempfile.mkstemp(dir=directory, prefix=posixpath.basename(path) + "-"),
        )
        self._writers[path] = self._writers.get(path, 0) + 1
        return EntryWriter(self, path, temporary, os.fdopen(fd, "wb"))

    def lease(self, repository: RepositoryLike) -> Lease:
        """A lease on `repository`'s cache, not begun yet.

        Raises:
            GitalyError: the repository names no valid storage or path.
        """
        return Lease(self._state_path(repository), self._count_error)

    @contextlib.asynccontextmanager
    async def leased(self, repository: RepositoryLike | None, method: str) -> AsyncIterator[None]:
        """Hold a lease on `repository` while the block (a mutation by `method`) runs.

        A lease that cannot be taken or ended is logged and counted under `method`; the
        block runs regardless, as in Gitaly.

        Cancellation: the lease ends however the block ends, cancelled included; ending
        it never awaits, so no cancellation can cut it off.
        """
        lease: Lease | None = None
        if repository is None:
            self._invalidation_failed(method, "no target repository")
        else:
            try:
                lease = self.lease(repository)
                lease.begin()
            except GitalyError as exc:
                self._invalidation_failed(method, exc.message)
            except OSError as exc:
                self._invalidation_failed(method, str(exc))
        try:
            yield
        finally:
            if lease is not None:
                try:
                    lease.end()
                except (OSError, MissingLeaseFileError) as exc:
                    self._invalidation_failed(method, str(exc))

    def _finished_writing(self, path: str, written: int) -> None:
        left = self._writers[path] - 1
        if left:
            self._writers[path] = left
            self.metrics.bytes_loser.inc(written)
        else:
            del self._writers[path]

    def _count_error(self, name: str) -> None:
        self.metrics.errors.labels(name).inc()

    def _invalidation_failed(self, method: str, error: str) -> None:
        self.metrics.invalidator_errors.labels(method).inc()
        LOG.error(
            "cache invalidation failed",
            extra={"fields": {"full_method_name": method, "error": error}},
        )

    def _state_path(self, repository: RepositoryLike) -> str:
        # The locator's rules (known storage, contained path) without requiring the
        # repository to exist: CreateRepository takes a lease on a path not there yet.
        path = self.locator.repo_path(repository, must_exist=False)
        storage = self.locator.storage_path(repository.storage_name)
        return posixpath.join(state_dir(storage), path[len(storage) + 1 :])


class EntryWriter:
    """An entry being written: a temporary file, renamed into place by `commit`."""

    def __init__(self, cache: DiskCache, path: str, temporary: str, file: BinaryIO) -> None:
        self._cache = cache
        self._path = path
        self._temporary = temporary
        self._file = file
        self._written = 0
        self._done = False

    async def write(self, chunk: bytes) -> None:
        """Append `chunk` (in a worker thread).

        Raises:
            OSError: the write failed; `discard` the entry.

        Cancellation: waits for the write in progress, then raises Cancelled.
        """
        await trio.to_thread.run_sync(self._file.write, chunk)
        self._written += len(chunk)

    def commit(self) -> None:
        """Publish the entry (rename over any older one). Blocking (one rename).

        Raises:
            OSError: the entry could not be published; it is discarded.
        """
        try:
            self._file.close()
            os.rename(self._temporary, self._path)
        except OSError:
            self._cache._count_error("ErrSafefileCommit")
            self.discard()
            raise
        self._cache.metrics.bytes_stored.inc(self._written)
        self._finish()

    def discard(self) -> None:
        """Drop the entry; safe to call more than once and after `commit`."""
        if self._done:
            return
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temporary)
        self._finish()

    def _finish(self) -> None:
        self._done = True
        self._cache._finished_writing(self._path, self._written)

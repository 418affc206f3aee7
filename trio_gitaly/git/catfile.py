"""A cache of long-lived `git cat-file --batch-command --buffer` processes.

One process per repository answers both object-info and object-content requests
(`info <rev>`, `contents <rev>`, each followed by `flush`; git >= 2.36). Starting git
costs milliseconds and an RPC may read thousands of objects, so processes are kept
between RPCs, as Gitaly keeps them (internal/git/catfile/cache.go).

Ownership: a checked-out process belongs to the `CatfileCache.reader` block that holds
it, which kills it on the way out unless it is clean enough to go back to the pool.
Idle processes belong to the cache, whose evictor (`run_evictor`) runs in the server's
workers nursery and closes them all when it is cancelled, so no cat-file outlives the
server.
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

import trio
from prometheus_client import Counter, Gauge

from trio_gitaly import tree_state
from trio_gitaly.git.catfile_reader import (
    LOOKUP_TYPES,
    BatchProcess,
    ObjectInfo,
    ObjectReader,
    ObjectTooLargeError,
)
from trio_gitaly.git.command import GitCommand

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from trio_gitaly.git.command import CommandFactory

__all__ = [
    "DEFAULT_MAX_IDLE",
    "EVICTION_INTERVAL_S",
    "IDLE_TTL_S",
    "CatfileCache",
    "ObjectInfo",
    "ObjectReader",
    "ObjectTooLargeError",
]

#: Idle processes kept at most (Gitaly's default `git.catfile_cache_size`).
DEFAULT_MAX_IDLE: Final = 100
#: How long a returned process may stay idle before it is closed.
IDLE_TTL_S: Final = 10.0
#: How often the evictor looks for expired processes.
EVICTION_INTERVAL_S: Final = 1.0
#: Processes are shared within a wall-clock bucket of this many minutes (Gitaly keys
#: on it instead of a client session id).
SESSION_BUCKET_MINUTES: Final = 5

_MEMBER_TYPE: Final = "object_reader"
# (repo path, object dir, alternates joined by ",", extra env, session bucket)
_Key = tuple[str, str, str, tuple[tuple[str, str], ...], int]


@dataclass(eq=False)
class _Idle:
    process: BatchProcess
    expiry: float


@final
class CatfileCache:
    """Idle cat-file processes by repository, handed out one user at a time.

    Args:
        factory: starts the processes (`CommandFactory.start`).
        registry: where the `gitaly_catfile_*` metrics are registered.
        max_idle: idle processes kept at most, the oldest evicted first; 0 or less
            means `DEFAULT_MAX_IDLE` (Gitaly's `catfile_cache_size` rule).
        ttl_s: how long a process stays idle before the evictor closes it.
        eviction_interval_s: how often the evictor runs.
    """

    def __init__(
        self,
        factory: CommandFactory,
        registry: CollectorRegistry,
        *,
        max_idle: int = DEFAULT_MAX_IDLE,
        ttl_s: float = IDLE_TTL_S,
        eviction_interval_s: float = EVICTION_INTERVAL_S,
    ) -> None:
        self._factory = factory
        self._max_idle = max_idle if max_idle > 0 else DEFAULT_MAX_IDLE
        self._ttl_s = ttl_s
        self._eviction_interval_s = eviction_interval_s
        # Idle processes by serial, in return order: the first is the oldest and the
        # first to expire. Several may share a key: under concurrent RPCs on one
        # repository, keeping only one per key (Gitaly's "duplicate" eviction) made every
        # return close a process and every checkout start one.
        self._idle: dict[int, tuple[_Key, _Idle]] = {}
        # Per key, the serials of its idle processes, most recently returned last.
        self._by_key: dict[_Key, list[int]] = {}
        self._serial = 0
        self._closed = False
        self._metrics = _CatfileMetrics(registry)
        # Read at scrape time rather than set on every checkout and return.
        self._metrics.members.labels(_MEMBER_TYPE).set_function(lambda: len(self._idle))

    @property
    def idle_count(self) -> int:
        """How many processes sit idle in the pool."""
        return len(self._idle)

    @property
    def max_idle(self) -> int:
        """How many idle processes the pool keeps at most."""
        return self._max_idle

    def reader(
        self,
        repo_path: str,
        *,
        object_dir: str = "",
        alternate_dirs: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> AbstractAsyncContextManager[ObjectReader]:
        """Check out a cat-file process for `repo_path`, starting one on a miss.

        Args:
            repo_path: the repository's directory (absolute, validated by the caller).
            object_dir: GIT_OBJECT_DIRECTORY (a quarantine directory), or "".
            alternate_dirs: GIT_ALTERNATE_OBJECT_DIRECTORIES, or none.
            env: more environment variables for git; part of the cache key.

        Returns:
            An async context manager giving a reader for its block only; the reader
            is unusable after the block.

        Raises:
            GitalyError: INVALID_ARGUMENT for a bad environment, INTERNAL when git
                cannot be started.

        Cancellation:
            Leaving the block in the middle of a request (cancellation, an exception
            from `send`, git dying) kills the process's group and reaps it, shielded
            and bounded (`REAP_TIMEOUT_S`); a process that is between requests goes
            back to the pool, whatever the block raised.
        """
        extra = dict(env or {})
        if object_dir:
            extra["GIT_OBJECT_DIRECTORY"] = object_dir
        if alternate_dirs:
            extra["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = os.pathsep.join(alternate_dirs)
        key: _Key = (
            repo_path,
            object_dir,
            ",".join(alternate_dirs),
            tuple(sorted((env or {}).items())),
            _session_bucket(),
        )
        return _Checkout(self, key, repo_path, extra)

    async def run_evictor(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Close expired and dead idle processes every `eviction_interval_s`, forever.

        Run it in the nursery that owns the cache (the server's workers nursery).

        Cancellation:
            Closes every idle process (shielded, each bounded by `REAP_TIMEOUT_S`), and
            from then on the cache keeps nothing: processes still checked out are
            closed when returned.
        """
        self._closed = False
        try:
            task_status.started()
            tree_state.worker_next(self._eviction_interval_s)
            while True:
                await trio.sleep(self._eviction_interval_s)
                await self._evict(expired_before=trio.current_time())
                tree_state.worker_ran(next_in_s=self._eviction_interval_s)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close every idle process and stop pooling returned ones.

        Cancellation:
            Shielded; each close is bounded by `REAP_TIMEOUT_S`.
        """
        self._closed = True
        await self._evict(expired_before=float("inf"))

    async def _checkout(self, key: _Key, repo_path: str, env: Mapping[str, str]) -> BatchProcess:
        serials = self._by_key.get(key)
        entry = self._take(serials[-1]) if serials else None
        if entry is not None:
            if entry.process.alive():
                self._metrics.hits.inc()
                return entry.process
            # Killed while idle (OOM killer, an operator): replace it, never hand it out.
            await self._close(entry.process)
        self._metrics.misses.inc()
        git = await self._factory.start(
            GitCommand("cat-file", flags=["--batch-command", "--buffer"], end_of_options=False),
            repo_path=repo_path,
            env=env,
        )
        self._metrics.spawned.inc()
        self._metrics.processes.inc()
        return BatchProcess(git)

    async def _return(self, key: _Key, process: BatchProcess) -> None:
        if self._closed or not process.clean():
            if process.alive() and not self._closed:
                # Output left unread or a request cut short: it is out of step with us.
                self._metrics.dirty.inc()
            await self._close(process)
            return
        victims: list[BatchProcess] = []
        self._serial += 1
        self._idle[self._serial] = (key, _Idle(process, trio.current_time() + self._ttl_s))
        self._by_key.setdefault(key, []).append(self._serial)
        while len(self._idle) > self._max_idle:
            victims.append(self._take(next(iter(self._idle))).process)
        for victim in victims:
            await self._close(victim)

    async def _evict(self, *, expired_before: float) -> None:
        victims = [
            serial
            for serial, (_, entry) in self._idle.items()
            if entry.expiry <= expired_before or not entry.process.alive()
        ]
        processes = [self._take(serial).process for serial in victims]
        with trio.CancelScope(shield=True):
            for process in processes:
                await self._close(process)

    def _take(self, serial: int) -> _Idle:
        """Remove one idle entry from both indexes."""
        key, entry = self._idle.pop(serial)
        serials = self._by_key[key]
        serials.remove(serial)
        if not serials:
            del self._by_key[key]
        return entry

    async def _close(self, process: BatchProcess) -> None:
        await process.aclose()
        self._metrics.processes.dec()


@final
class _Checkout:
    """One `CatfileCache.reader` block: checks a process out on entry, back on exit.

    A class rather than an @asynccontextmanager generator: at thousands of lookups a
    second, the generator machinery was a measurable share of a cached lookup.
    """

    __slots__ = ("_cache", "_env", "_handle", "_key", "_process", "_repo_path")

    def __init__(
        self, cache: CatfileCache, key: _Key, repo_path: str, env: Mapping[str, str]
    ) -> None:
        self._cache = cache
        self._key = key
        self._repo_path = repo_path
        self._env = env
        self._process: BatchProcess | None = None
        self._handle: ObjectReader | None = None

    async def __aenter__(self) -> ObjectReader:
        if self._process is not None:
            raise RuntimeError("a CatfileCache.reader block cannot be entered twice")
        self._process = await self._cache._checkout(self._key, self._repo_path, self._env)
        # No checkpoint from here to the block: once __aenter__ returns, __aexit__ runs.
        self._handle = ObjectReader(self._process, self._cache._metrics.lookup_counters)
        return self._handle

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._process is not None
        assert self._handle is not None
        self._handle._release()
        await self._cache._return(self._key, self._process)


def _session_bucket() -> int:
    """Gitaly's session id: the end minute of the current 5-minute bucket (5..60)."""
    return (time.localtime().tm_min // SESSION_BUCKET_MINUTES + 1) * SESSION_BUCKET_MINUTES


class _CatfileMetrics:
    """The cache's metrics, collected as one collector.

    prometheus_client refuses to register the gauge `gitaly_catfile_processes` next to
    the counter `gitaly_catfile_processes_total` (both claim the base name), yet those
    are Gitaly's names. Registering one collector that yields both (as Gitaly's
    ProcessCache does) sidesteps the check without changing the exposition.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.cache = Counter(
            "gitaly_catfile_cache_total",
            "Counter of catfile cache hit/miss",
            ["type"],
            registry=None,
        )
        self.processes = Gauge(
            "gitaly_catfile_processes", "Gauge of active catfile processes", registry=None
        )
        self.spawned = Counter(
            "gitaly_catfile_processes_total", "Counter of catfile processes", registry=None
        )
        self.lookups = Counter(
            "gitaly_catfile_lookups_total",
            "Git catfile lookups by object type",
            ["type"],
            registry=None,
        )
        self.hits = self.cache.labels("hit")
        self.misses = self.cache.labels("miss")
        self.dirty = self.cache.labels("dirty")
        self.lookup_counters = {kind: self.lookups.labels(kind) for kind in LOOKUP_TYPES}
        self.members = Gauge(
            "gitaly_catfile_cache_members",
            "Gauge of catfile cache members by process type",
            ["type"],
            registry=None,
        )
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """Every family of the five metrics (the prometheus_client collector protocol)."""
        metric: Any
        for metric in (self.cache, self.processes, self.spawned, self.lookups, self.members):
            yield from metric.collect()

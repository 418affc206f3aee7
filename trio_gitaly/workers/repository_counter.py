"""The repository counter: `gitaly_total_repositories_count{path,prefix}`.

After start-up (a worker: readiness never waits for it) each unique storage path is
walked once, in a thread, skipping `+gitaly`; a directory that holds objects, refs and
HEAD is counted and not descended into. The label `prefix` is the first component of
the repository's relative path (`@hashed`, `@pools`, ...), the second under `@cluster`;
a repository directly in the storage root has none and is skipped with a warning, as
in Gitaly. The gauge is not exported at all until every storage has been walked, so a
scrape never sees a partial count. CreateRepository and RemoveRepository adjust it
through `tracking()`.

Adjustments during a walk. Gitaly adds them to the gauge at once, so a repository
created before the walk reaches it is counted twice, and one removed before the walk
reaches it is subtracted from a count that never had it. Here the walk visits
directories in sorted depth-first order, which is the order of their relative paths
as tuples of components, and records where it is (`position`) under the same lock as
its verdict on each directory. A change to path P then begins in one of two ways:

- P <= position: the walk has already decided P, seeing the state before the change;
  the change's delta is kept and added when the walk's counts are published.
- otherwise P is "touched": the walk, reaching P while the change is in flight, does
  not count it, and the change counts P by looking at the disk when it ends. A change
  that ended before the walk got there leaves P to the walk, which now sees the final
  state; what the walk never reaches (P's parent was listed before P existed) is
  looked at when the walk ends.

Each created or removed repository is thus counted once, whatever the interleaving.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import os
import posixpath
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

import trio
from prometheus_client.core import GaugeMetricFamily

from trio_gitaly.storage.locator import INTERNAL_DIR, is_repository
from trio_gitaly.storage.repository_changes import RepositoryChange

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from prometheus_client import CollectorRegistry, Metric

    from trio_gitaly.storage.locator import Storage

LOG = logging.getLogger("trio_gitaly.counter")

METRIC: Final = "gitaly_total_repositories_count"
_HELP: Final = "Gauge of number of repositories by storage path and repository prefix"
#: Praefect's repositories live under this directory; their prefix is the next component.
CLUSTER_PREFIX: Final = "@cluster"

# A relative path as its components: tuples compare in the walk's visiting order.
_Key = tuple[str, ...]


def repository_prefix(key: _Key) -> str | None:
    """The `prefix` label of the repository at relative path `key`; None if malformed."""
    index = 1 if key and key[0] == CLUSTER_PREFIX else 0
    return key[index] if len(key) >= index + 2 else None


@dataclass
class _Touch:
    inflight: int = 0
    # The walk reached the path while a change was in flight and did not count it.
    skipped: bool = False


@dataclass
class _Storage:
    path: str
    position: _Key = ()
    walked: bool = False
    touched: dict[_Key, _Touch] = field(default_factory=dict)
    # Deltas of changes the walk had already decided, by prefix, until it publishes.
    pending: collections.Counter[str] = field(default_factory=collections.Counter)


@final
class RepositoryCounter:
    """Counts the repositories of the storages; a Prometheus collector of its gauge."""

    def __init__(self, storages: Sequence[Storage], registry: CollectorRegistry) -> None:
        """Register the (still hidden) gauge; `run` walks the storages."""
        # Guards everything below; the walk thread takes it once per directory.
        self._lock = threading.Lock()
        self._paths = {storage.name: storage.path for storage in storages}
        self._storages = {path: _Storage(path) for path in dict.fromkeys(self._paths.values())}
        self._counts: dict[tuple[str, str], int] = {}
        self._exported = False
        registry.register(self)

    # -- the collector ---------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """The gauge's family without samples (registration reads nothing)."""
        yield GaugeMetricFamily(METRIC, _HELP, labels=["path", "prefix"])

    def collect(self) -> Iterator[Metric]:
        """The gauge, once every storage has been walked; nothing before."""
        with self._lock:
            if not self._exported:
                return
            samples = sorted(self._counts.items())
        family = GaugeMetricFamily(METRIC, _HELP, labels=["path", "prefix"])
        for (path, prefix), count in samples:
            family.add_metric([path, prefix], count)
        yield family

    # -- the worker ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Walk each unique storage path once, then export the gauge and return.

        Cancellation: stops at once; the gauge stays hidden. The walk in progress is
        abandoned in its thread, which ends at the next directory.
        """
        task_status.started()
        LOG.info("counting repositories")
        start = time.monotonic()
        for storage in self._storages.values():
            LOG.info(
                "starting to count repositories", extra={"fields": {"storage_path": storage.path}}
            )
            storage_start = time.monotonic()
            walk = functools.partial(
                self._walk, storage, check_cancelled=trio.from_thread.check_cancelled
            )
            error = await trio.to_thread.run_sync(walk, abandon_on_cancel=True)
            if error:
                LOG.error(
                    "failed to count repositories",
                    extra={"fields": {"storage_path": storage.path, "error": error}},
                )
            LOG.info(
                "completed counting repositories",
                extra={
                    "fields": {
                        "storage_path": storage.path,
                        "counting_duration_ms": _since_ms(storage_start),
                    }
                },
            )
        with self._lock:
            self._exported = True
        LOG.info(
            "completed counting all repositories",
            extra={"fields": {"counting_duration": _since_ms(start)}},
        )

    # -- adjustments -----------------------------------------------------------------------

    @contextlib.contextmanager
    def tracking(self, storage_name: str, repo_path: str) -> Iterator[RepositoryChange]:
        """Wrap the rename that creates or removes the repository at `repo_path`.

        The caller calls `record(+1)` or `record(-1)` on the change once the
        repository has appeared or gone; a change left at 0 (the RPC failed) counts
        nothing. The block must contain the filesystem change: see the module
        docstring for why it matters while the walk runs.
        """
        change = RepositoryChange()
        storage_path = self._paths.get(storage_name)
        key = tuple(posixpath.relpath(repo_path, storage_path).split("/")) if storage_path else ()
        prefix = repository_prefix(key)
        if storage_path is None or prefix is None:
            # Gitaly neither counts nor warns about these outside the walk.
            yield change
            return
        storage = self._storages[storage_path]
        with self._lock:
            touched = self._begin(storage, key)
        try:
            yield change
        finally:
            with self._lock:
                if touched:
                    self._end_touched(storage, key, prefix, repo_path)
                else:
                    self._add(storage, prefix, change.delta)

    def _begin(self, storage: _Storage, key: _Key) -> bool:
        """Whether the change is "touched" (see the module docstring)."""
        if key not in storage.touched and (storage.walked or key <= storage.position):
            return False
        storage.touched.setdefault(key, _Touch()).inflight += 1
        return True

    def _end_touched(self, storage: _Storage, key: _Key, prefix: str, repo_path: str) -> None:
        touch = storage.touched[key]
        touch.inflight -= 1
        if touch.inflight or not touch.skipped:
            return
        del storage.touched[key]
        self._add(storage, prefix, int(is_repository(repo_path)))

    def _add(self, storage: _Storage, prefix: str, delta: int) -> None:
        if not delta:
            return
        if storage.walked:
            label = (storage.path, prefix)
            self._counts[label] = self._counts.get(label, 0) + delta
        else:
            storage.pending[prefix] += delta

    # -- the walk (in a thread) ------------------------------------------------------------

    def _walk(self, storage: _Storage, *, check_cancelled: Callable[[], None]) -> str:
        """Count `storage`'s repositories and publish them; return the error that
        ended the walk early ("" when none), as Gitaly keeps what it counted."""
        counts: collections.Counter[str] = collections.Counter()
        error = ""
        try:
            # (key, may descend) in reverse visiting order: pop() yields sorted pre-order.
            stack: list[tuple[_Key, bool]] = [
                ((name,), not link)
                for name, link in reversed(_subdirs(storage.path))
                if name != INTERNAL_DIR
            ]
            while stack:
                check_cancelled()
                key, may_descend = stack.pop()
                path = posixpath.join(storage.path, *key)
                is_repo, counted = self._visit(storage, key, path)
                if counted:
                    prefix = repository_prefix(key)
                    if prefix is None:
                        LOG.warning(
                            "counting repositories failed due to malformed path",
                            extra={
                                "fields": {
                                    "storage_path": storage.path,
                                    "error": f"malformed repository path {'/'.join(key)!r}",
                                }
                            },
                        )
                    else:
                        counts[prefix] += 1
                if is_repo or not may_descend:
                    continue
                children = _subdirs(path)
                stack.extend(((*key, name), not link) for name, link in reversed(children))
        except OSError as exc:
            error = str(exc)
        self._publish(storage, counts)
        return error

    def _visit(self, storage: _Storage, key: _Key, path: str) -> tuple[bool, bool]:
        """(is a repository, count it): the walk's verdict on one directory."""
        # The look at the disk is inside the lock too: a change to `key` that began
        # after it would otherwise be judged "behind the walk" and counted twice.
        with self._lock:
            storage.position = key
            is_repo = is_repository(path)
            touch = storage.touched.get(key)
            if touch is None:
                return is_repo, is_repo
            if touch.inflight:
                touch.skipped = True
                return is_repo, False
            # The change is over: what the walk sees now is its result.
            del storage.touched[key]
            return is_repo, is_repo

    def _publish(self, storage: _Storage, counts: collections.Counter[str]) -> None:
        with self._lock:
            for key, touch in list(storage.touched.items()):
                if touch.inflight:
                    touch.skipped = True
                    continue
                # Ended, but the walk never got there: look now.
                del storage.touched[key]
                prefix = repository_prefix(key)
                if prefix is not None and is_repository(posixpath.join(storage.path, *key)):
                    counts[prefix] += 1
            counts.update(storage.pending)
            storage.pending.clear()
            storage.walked = True
            for prefix, count in counts.items():
                self._add(storage, prefix, count)


def _subdirs(path: str) -> list[tuple[str, bool]]:
    """The directories in `path` (symlinks to one included) as (name, is a symlink),
    sorted by name; none when `path` vanished meanwhile."""
    try:
        with os.scandir(path) as entries:
            found = [(e.name, e.is_symlink()) for e in entries if e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found)


def _since_ms(start: float) -> int:
    return round((time.monotonic() - start) * 1000)

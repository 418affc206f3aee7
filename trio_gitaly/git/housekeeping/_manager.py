"""The housekeeping manager: one optimisation run at a time per repository.

`optimize` reads the repository's state, lets the strategy decide, then runs, in this
order: clean stale data, repack, prune, pack refs, write the commit-graph. The first
failure stops the run. A run that finds another one holding the repository returns at
once, having done nothing (Gitaly's "skipped silently"), so the daily maintenance and an
OptimizeRepository call never repack the same repository twice over.

Facts: Gitaly's internal/git/housekeeping/manager/{manager,optimize_repository}.go.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import trio

from trio_gitaly.errors import GitalyError, internal, invalid_argument
from trio_gitaly.git.housekeeping._info import RepositoryInfo, repository_info
from trio_gitaly.git.housekeeping._metrics import HousekeepingMetrics
from trio_gitaly.git.housekeeping._stale import clean_stale_files
from trio_gitaly.git.housekeeping._strategy import (
    CommitGraphConfig,
    PruneConfig,
    RepackConfig,
    RepackStrategy,
    Strategy,
    make_strategy,
)
from trio_gitaly.git.housekeeping._tasks import (
    pack_references,
    prune_empty_config_sections,
    prune_objects,
    remove_obsolete_config,
    repack_objects,
    write_commit_graph,
)

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from trio_gitaly.git.command import CommandFactory

LOG = logging.getLogger("trio_gitaly.housekeeping")

#: PruneUnreachableObjects deletes unreachable objects untouched for this long; a
#: concurrent push has that long to make the objects it wrote reachable.
PRUNE_UNREACHABLE_GRACE_S: Final = 30 * 60
SUCCESS: Final = "success"
FAILURE: Final = "failure"
_SYSTEM: Final = {"system": "housekeeping"}


@dataclass(frozen=True)
class OptimizeResult:
    """What one `optimize` call did.

    Attributes:
        ran: False when another run held the repository, and nothing was done.
        optimizations: optimisation name (`packed_objects_<strategy>`, `written_bitmap`,
            `written_multi_pack_index`, `pruned_objects`, `packed_refs`,
            `written_commit_graph_full|incremental`) to "success" or "failure".
    """

    ran: bool
    optimizations: Mapping[str, str] = field(default_factory=dict)


class HousekeepingManager:
    """Optimises repositories; at most one run per repository at a time, in this process.

    Args:
        git: runs every git command.
        registry: where the gitaly_housekeeping_* metrics are registered.
    """

    def __init__(self, git: CommandFactory, registry: CollectorRegistry) -> None:
        self._git = git
        self.metrics = HousekeepingMetrics(registry)
        self._running: set[str] = set()

    def is_running(self, repo_path: str) -> bool:
        """Whether an `optimize` of the repository at `repo_path` is under way."""
        return _key(repo_path) in self._running

    async def optimize(
        self, repo_path: str, *, strategy: Strategy = Strategy.HEURISTICAL
    ) -> OptimizeResult:
        """Optimise the repository at `repo_path` as `strategy` decides.

        Args:
            repo_path: the repository's absolute directory (validated by the caller).
            strategy: HEURISTICAL does what the repository's state calls for; EAGER
                does everything.

        Returns:
            What was done; `ran` is False when another run held the repository.

        Raises:
            GitalyError: INTERNAL naming the step that failed ("could not repack: ...");
                the steps before it stay done.

        Cancellation:
            The running git command is killed and the repository is released; what
            finished stays done, and the run is counted and logged as a failure.
        """
        key = _key(repo_path)
        # Checked and taken with no checkpoint in between: nothing can slip in.
        if key in self._running:
            return OptimizeResult(ran=False)
        self._running.add(key)
        try:
            return await self._optimize(key, strategy)
        finally:
            self._running.discard(key)

    async def clean_stale_data(self, repo_path: str) -> dict[str, int]:
        """Remove stale temporary, lock and server-info files and obsolete config.

        Returns:
            How many were removed, by `filetype` (the pruned-files metric's label).

        Raises:
            GitalyError: INTERNAL when the repository cannot be read or config cleanup
                fails.

        Cancellation:
            Stops after the current step; what was removed stays removed.
        """
        removed: dict[str, int] = {}
        try:
            report = await trio.to_thread.run_sync(clean_stale_files, repo_path, time.time())
            removed.update(report.removed)
            for path, error in report.failures:
                fields = {**_SYSTEM, "path": path, "error": str(error)}
                LOG.warning("unable to remove stale file", extra={"fields": fields})
            if report.failures:
                removed["failures"] = len(report.failures)
            removed["configsections"] = await prune_empty_config_sections(self._git, repo_path)
            removed.update(await remove_obsolete_config(self._git, repo_path))
        finally:
            for filetype, count in removed.items():
                self.metrics.pruned_files_total.labels(filetype).inc(count)
            if any(removed.values()):
                counts = {f"stale_data.{k}": v for k, v in removed.items()}
                LOG.info("removed files", extra={"fields": {**_SYSTEM, **counts}})
        return removed

    async def prune_unreachable(self, repo_path: str) -> None:
        """Delete objects unreachable from any reference and untouched for 30 minutes.

        Loose ones go with `git prune`; packed ones only with a full cruft repack, which
        also resets the full-repack clock. The commit-graph is then rewritten so that it
        names no deleted commit.

        Raises:
            GitalyError: INVALID_ARGUMENT for an object pool (its members may still need
                any of its objects); INTERNAL when a step fails.

        Cancellation:
            The running git command is killed; what finished stays done.
        """
        info = await self._repository_info(repo_path, time.time())
        if info.is_object_pool:
            raise invalid_argument("pruning objects for object pool")
        expire_before = time.time() - PRUNE_UNREACHABLE_GRACE_S
        await _step(
            "pruning objects", prune_objects(self._git, repo_path, PruneConfig(expire_before))
        )
        repack = RepackConfig(
            RepackStrategy.FULL_WITH_CRUFT,
            write_bitmap=not info.alternates.object_directories,
            write_multi_pack_index=True,
            cruft_expire_before=expire_before,
        )
        await _step(
            "repacking objects",
            repack_objects(self._git, repo_path, repack, is_object_pool=False),
        )
        graph = CommitGraphConfig(replace_chain=True)
        await _step("rewriting commit-graph", write_commit_graph(self._git, repo_path, graph))

    async def _optimize(self, repo_path: str, strategy: Strategy) -> OptimizeResult:
        now = time.time()
        info = await self._repository_info(repo_path, now)
        self.metrics.report_repository_info(info, now=now)
        decided = make_strategy(strategy, info, now=now)
        optimizations: dict[str, str] = {}
        total_started = time.monotonic()
        status = FAILURE

        async def task(name: str, error: str, run: Callable[[], Awaitable[object]]) -> None:
            started = time.monotonic()
            await _step(error, run())
            self.metrics.observe_latency(name, started)

        def record(names: list[str], outcome: str) -> None:
            optimizations.update(dict.fromkeys(names, outcome))

        try:
            await task(
                "clean-stale-data",
                "could not execute housekeeping",
                lambda: self.clean_stale_data(repo_path),
            )
            repack = decided.repack_objects()
            if repack is not None:
                names = [f"packed_objects_{repack.strategy}"]
                if repack.write_bitmap:
                    names.append("written_bitmap")
                if repack.write_multi_pack_index:
                    names.append("written_multi_pack_index")
                record(names, FAILURE)
                await task(
                    "repack",
                    "could not repack",
                    functools.partial(
                        repack_objects,
                        self._git,
                        repo_path,
                        repack,
                        is_object_pool=info.is_object_pool,
                    ),
                )
                record(names, SUCCESS)
            prune = decided.prune_objects()
            if prune is not None:
                record(["pruned_objects"], FAILURE)
                await task(
                    "prune",
                    "could not prune",
                    functools.partial(prune_objects, self._git, repo_path, prune),
                )
                record(["pruned_objects"], SUCCESS)
            if decided.pack_references():
                record(["packed_refs"], FAILURE)
                await task(
                    "pack-refs",
                    "could not pack refs",
                    functools.partial(pack_references, self._git, repo_path),
                )
                record(["packed_refs"], SUCCESS)
            graph = decided.write_commit_graph()
            if graph is not None:
                kind = "full" if graph.replace_chain else "incremental"
                record([f"written_commit_graph_{kind}"], FAILURE)
                await task(
                    "commit-graph",
                    "could not write commit-graph",
                    functools.partial(write_commit_graph, self._git, repo_path, graph),
                )
                record([f"written_commit_graph_{kind}"], SUCCESS)
            status = SUCCESS
        finally:
            # Counted and logged however the run ended, cancellation included.
            self.metrics.observe_latency("total", total_started)
            for name, outcome in optimizations.items():
                self.metrics.tasks_total.labels(name, outcome).inc()
            self.metrics.tasks_total.labels("total", status).inc()
            fields = {**_SYSTEM, "optimizations": optimizations, "repository_path": repo_path}
            LOG.info("optimized repository", extra={"fields": fields})
        return OptimizeResult(ran=True, optimizations=optimizations)

    async def _repository_info(self, repo_path: str, now: float) -> RepositoryInfo:
        info = await trio.to_thread.run_sync(
            functools.partial(repository_info, repo_path, now_ns=int(now * 1e9))
        )
        fields = {**_SYSTEM, "repository_info": info.log_fields(), "repository_path": repo_path}
        LOG.info("repository info", extra={"fields": fields})
        return info


def _key(repo_path: str) -> str:
    """One spelling per repository directory, so that both callers meet in the guard."""
    return os.path.normpath(repo_path)


async def _step(what: str, running: Awaitable[object]) -> None:
    """Await one step; its failure becomes a GitalyError prefixed with `what`."""
    try:
        await running
    except GitalyError as exc:
        raise exc.wrap(what) from exc
    except OSError as exc:
        raise internal(f"{what}: {exc.strerror or exc}") from exc

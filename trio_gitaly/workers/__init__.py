"""The background jobs of the workers nursery, one module each: `async def run(...,
*, task_status)` that reports started once it runs and stops when cancelled.

`background_workers` lists the jobs a server runs, in the order they start.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry

from trio_gitaly.config import Config
from trio_gitaly.git.catfile import CatfileCache
from trio_gitaly.git.housekeeping import HousekeepingManager
from trio_gitaly.limits.cgroups import CgroupManager, prune_stale_groups
from trio_gitaly.limits.server_limits import ServerLimits
from trio_gitaly.storage.diskcache import DiskCache
from trio_gitaly.storage.locator import Storage
from trio_gitaly.workers import daily_maintenance, diskcache_walkers, tempdir_cleaner

#: A job: started with `await nursery.start(worker)`, reporting started once it runs.
Worker = Callable[..., Awaitable[None]]


def background_workers(
    cfg: Config,
    *,
    storages: Sequence[Storage],
    registry: CollectorRegistry,
    catfile: CatfileCache,
    repository_counter: Worker,
    diskcache: DiskCache,
    housekeeping: HousekeepingManager,
    cgroups: CgroupManager,
    limits: ServerLimits,
) -> list[tuple[str, Worker]]:
    """(name, worker) for every job `cfg` asks for."""

    async def optimize(storage: str, relative_path: str, path: str) -> object:
        return await housekeeping.optimize(path)

    roots = [daily_maintenance.StorageRoot(s.name, s.path) for s in storages]
    jobs: list[tuple[str, Worker]] = [
        # The cache's idle processes belong to its evictor.
        ("catfile cache evictor", catfile.run_evictor),
        # Walks after start-up; the gauge stays hidden from /metrics until then.
        ("repository counter", repository_counter),
        ("tempdir cleaner", functools.partial(tempdir_cleaner.run, storages, registry)),
        # Empties the disk cache before it reports started, so before any RPC is served.
        ("disk cache walkers", functools.partial(diskcache_walkers.run, diskcache)),
        (
            "daily maintenance",
            functools.partial(
                daily_maintenance.run_daily_maintenance, cfg.daily_maintenance, roots, optimize
            ),
        ),
    ]
    if cgroups.ready:
        jobs.append(("cgroup pruner", functools.partial(prune_stale_groups, cfg.cgroups)))
    if limits.calibrator is not None:
        jobs.append(("adaptive-limit calibration", limits.calibrator.run))
    return jobs

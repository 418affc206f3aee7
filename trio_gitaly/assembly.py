"""What the tree serves, built once the runtime directory, git and the storages are known:
the services' dependencies, the gRPC server with its middleware, the gateway, and the
background jobs. Nothing here runs; nursery_tree.py starts it all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trio_gitaly.config import Config
from trio_gitaly.git.catfile import CatfileCache
from trio_gitaly.git.command import CommandFactory
from trio_gitaly.git.housekeeping import HousekeepingManager
from trio_gitaly.git.version import GitBinary
from trio_gitaly.hooks.install import HookSetup
from trio_gitaly.http.gateway import GATEWAY_RPCS, Gateway
from trio_gitaly.lifecycle import Lifecycle
from trio_gitaly.limits.cgroups import CgroupManager
from trio_gitaly.limits.server_limits import ServerLimits, build_limits
from trio_gitaly.limits.watchers import watchers
from trio_gitaly.metrics import Metrics
from trio_gitaly.rpc.middleware import chain
from trio_gitaly.rpc.server import GrpcServer
from trio_gitaly.rpc.services import Dependencies, all_routes
from trio_gitaly.storage.diskcache import DiskCache
from trio_gitaly.storage.locator import Locator
from trio_gitaly.workers import Worker, background_workers
from trio_gitaly.workers.repository_counter import RepositoryCounter

LOG = logging.getLogger("trio_gitaly.server")


@dataclass(frozen=True)
class Assembly:
    """The parts of one server, ready to be started."""

    deps: Dependencies
    server: GrpcServer
    gateway: Gateway | None
    workers: Sequence[tuple[str, Worker]]
    limits: ServerLimits
    catfile: CatfileCache


def assemble(
    cfg: Config,
    *,
    metrics: Metrics,
    lifecycle: Lifecycle,
    git_binary: GitBinary,
    locator: Locator,
    hooks: HookSetup,
    cgroups: CgroupManager,
) -> Assembly:
    """Build every part `cfg` asks for; each component gets its own config section."""
    factory = CommandFactory(git_binary, placer=cgroups)
    catfile = CatfileCache(factory, metrics.registry, max_idle=cfg.git.catfile_cache_size)
    limits = build_limits(cfg, metrics.registry, watchers(cfg.adaptive_limiting, cgroups.stats))
    # Walked by its worker after start-up; hidden from /metrics until then.
    repo_counter = RepositoryCounter(locator.storages, metrics.registry)
    # One per tree: its per-repository guard spans the RPCs and the daily maintenance.
    housekeeping = HousekeepingManager(factory, metrics.registry)
    deps = Dependencies(
        locator=locator,
        git=factory,
        git_binary=git_binary,
        lifecycle=lifecycle,
        catfile=catfile,
        hooks=hooks,
        gitlab=cfg.gitlab,
        hooks_config=cfg.hooks,
        limits=limits,
        housekeeping=housekeeping,
        diskcache=DiskCache(locator, metrics.registry),
        repo_counter=repo_counter,
    )
    workers = background_workers(
        cfg,
        storages=locator.storages,
        registry=metrics.registry,
        catfile=catfile,
        repository_counter=repo_counter.run,
        diskcache=deps.diskcache,
        housekeeping=housekeeping,
        cgroups=cgroups,
        limits=limits,
    )
    routes = all_routes(deps)
    _warn_unserved_limits(limits, routes)
    server = GrpcServer(
        cfg.grpc,
        routes,
        chain(metrics=metrics, auth=cfg.auth, limits=limits, cache=deps.diskcache),
        on_accept=lambda transport: metrics.connections.labels(transport).inc(),
    )
    gateway = None
    if cfg.gateway.listen_addr is not None:
        # What the services use, so that both serve a push the same way.
        gateway = Gateway(locator, factory, hooks, cfg.gateway.basic_auth, limits, deps.diskcache)
    return Assembly(deps, server, gateway, workers, limits, catfile)


def _warn_unserved_limits(limits: ServerLimits, routes: Mapping[str, object]) -> None:
    # The gateway's RPC names count as served: its requests are limited under them.
    served = set(routes) | set(GATEWAY_RPCS.values())
    for rpc in limits.per_rpc:
        if rpc not in served:
            LOG.warning(
                "concurrency limit for an RPC this server does not serve",
                extra={"fields": {"rpc": rpc}},
            )

"""The gRPC services, one module or package each, and the dependencies they are built from.

Services never import each other: what two of them share lives in git/, storage/, or
the service-neutral helpers of rpc/ (repo.py, gitproto.py, streaming.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from trio_gitaly.config import GitlabConfig, HooksConfig
from trio_gitaly.git.catfile import CatfileCache
from trio_gitaly.git.command import CommandFactory
from trio_gitaly.git.housekeeping import HousekeepingManager
from trio_gitaly.git.version import GitBinary
from trio_gitaly.hooks.install import HookSetup
from trio_gitaly.lifecycle import Lifecycle
from trio_gitaly.limits.server_limits import ServerLimits
from trio_gitaly.rpc.registry import Route, merge, routes
from trio_gitaly.storage.diskcache import DiskCache
from trio_gitaly.storage.locator import Locator
from trio_gitaly.storage.repository_changes import RepositoryTracker


@dataclass(frozen=True)
class Dependencies:
    """What the services need from the rest of the server (Gitaly's service.Dependencies)."""

    locator: Locator
    git: CommandFactory
    git_binary: GitBinary
    lifecycle: Lifecycle
    catfile: CatfileCache
    # Where receive-pack finds our hooks, and how they call back.
    hooks: HookSetup
    # GitLab's internal API and the server-wide custom hooks, for HookService.
    gitlab: GitlabConfig
    hooks_config: HooksConfig
    # The pack-objects limiter bounds upload-pack sessions (per-RPC limits are middleware).
    limits: ServerLimits
    # Optimises repositories, one run per repository at a time (shared with maintenance).
    housekeeping: HousekeepingManager
    # Cached upload-pack advertisements (invalidation is middleware).
    diskcache: DiskCache
    # gitaly_total_repositories_count: CreateRepository / RemoveRepository adjust it.
    repo_counter: RepositoryTracker


class ServiceBase:
    """Holds the dependencies; a service's RPC methods are added by subclasses."""

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps


def all_routes(deps: Dependencies) -> dict[str, Route]:
    """The method table of every service this server implements."""
    from trio_gitaly.rpc.gen.gitaly import (
        blob_pb2,
        commit_pb2,
        diff_pb2,
        hook_pb2,
        ref_pb2,
        repository_pb2,
        server_pb2,
        smarthttp_pb2,
        ssh_pb2,
    )
    from trio_gitaly.rpc.gen.grpc.health.v1 import health_pb2
    from trio_gitaly.rpc.services.blob import BlobService
    from trio_gitaly.rpc.services.commit import CommitService
    from trio_gitaly.rpc.services.diff import DiffService
    from trio_gitaly.rpc.services.health import HealthService
    from trio_gitaly.rpc.services.hook import HookService
    from trio_gitaly.rpc.services.ref import RefService
    from trio_gitaly.rpc.services.repository import RepositoryService
    from trio_gitaly.rpc.services.server import ServerService
    from trio_gitaly.rpc.services.smarthttp import SmartHTTPService
    from trio_gitaly.rpc.services.ssh import SSHService

    served = [
        (health_pb2.DESCRIPTOR.services_by_name["Health"], HealthService(deps)),
        (server_pb2.DESCRIPTOR.services_by_name["ServerService"], ServerService(deps)),
        (repository_pb2.DESCRIPTOR.services_by_name["RepositoryService"], RepositoryService(deps)),
        (ref_pb2.DESCRIPTOR.services_by_name["RefService"], RefService(deps)),
        (commit_pb2.DESCRIPTOR.services_by_name["CommitService"], CommitService(deps)),
        (blob_pb2.DESCRIPTOR.services_by_name["BlobService"], BlobService(deps)),
        (diff_pb2.DESCRIPTOR.services_by_name["DiffService"], DiffService(deps)),
        (ssh_pb2.DESCRIPTOR.services_by_name["SSHService"], SSHService(deps)),
        (smarthttp_pb2.DESCRIPTOR.services_by_name["SmartHTTPService"], SmartHTTPService(deps)),
        (hook_pb2.DESCRIPTOR.services_by_name["HookService"], HookService(deps)),
    ]
    return merge(routes(descriptor, servicer) for descriptor, servicer in served)

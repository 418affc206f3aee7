"""RepositoryService, housekeeping: OptimizeRepository and PruneUnreachableObjects.

Both hand the located repository to the housekeeping manager (git/housekeeping/), which
the daily maintenance shares, so an RPC and the maintenance window never optimise the
same repository at once. Codes and messages are Gitaly's
(internal/gitaly/service/repository/{optimize,prune_unreachable_objects}.go).
"""

from __future__ import annotations

from typing import Final

from trio_gitaly.errors import invalid_argument
from trio_gitaly.git.housekeeping import Strategy
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import repository_pb2
from trio_gitaly.rpc.services import ServiceBase

_Request = repository_pb2.OptimizeRepositoryRequest
_STRATEGIES: Final = {
    _Request.STRATEGY_UNSPECIFIED: Strategy.HEURISTICAL,
    _Request.STRATEGY_HEURISTICAL: Strategy.HEURISTICAL,
    _Request.STRATEGY_EAGER: Strategy.EAGER,
}


class RepositoryHousekeeping(ServiceBase):
    """OptimizeRepository and PruneUnreachableObjects."""

    async def OptimizeRepository(
        self, request: repository_pb2.OptimizeRepositoryRequest, call: ServerCall
    ) -> repository_pb2.OptimizeRepositoryResponse:
        """Optimise the repository (heuristical unless EAGER is asked for).

        Returns at once, successfully, when another optimisation of the repository is
        running. A failed step is INTERNAL (the manager's errors keep their code, as
        Gitaly's wrapping does). Cancellation: the running git command is killed; the steps already
        done stay done.
        """
        path = self._deps.locator.repo_path(request.repository)
        strategy = _STRATEGIES.get(request.strategy)
        if strategy is None:
            raise invalid_argument(f"unsupported optimization strategy {request.strategy}")
        await self._deps.housekeeping.optimize(path, strategy=strategy)
        return repository_pb2.OptimizeRepositoryResponse()

    async def PruneUnreachableObjects(
        self, request: repository_pb2.PruneUnreachableObjectsRequest, call: ServerCall
    ) -> repository_pb2.PruneUnreachableObjectsResponse:
        """Delete objects unreachable from any reference and untouched for 30 minutes.

        INVALID_ARGUMENT for an object pool. Cancellation: the running git command is
        killed; what was deleted stays deleted.
        """
        path = self._deps.locator.repo_path(request.repository)
        await self._deps.housekeeping.prune_unreachable(path)
        return repository_pb2.PruneUnreachableObjectsResponse()

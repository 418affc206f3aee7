"""RepositoryService, read-only questions about a repository."""

from __future__ import annotations

from trio_gitaly.rpc.services import ServiceBase


class RepositoryInfo(ServiceBase):
    """HasLocalBranches, RepositorySize, RepositoryInfo, FindMergeBase, CalculateChecksum,
    SearchFilesByName (being implemented; until then they answer UNIMPLEMENTED)."""

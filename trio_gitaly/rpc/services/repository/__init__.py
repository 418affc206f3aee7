"""gitaly.RepositoryService: lifecycle (lifecycle.py) and read-only questions (info.py)."""

from __future__ import annotations

from trio_gitaly.rpc.services.repository.info import RepositoryInfo
from trio_gitaly.rpc.services.repository.lifecycle import RepositoryLifecycle


class RepositoryService(RepositoryLifecycle, RepositoryInfo):
    """Every RepositoryService RPC this server implements."""

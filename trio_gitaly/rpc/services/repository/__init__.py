"""gitaly.RepositoryService: lifecycle (lifecycle.py), read-only questions (info.py) and
housekeeping (housekeeping.py)."""

from __future__ import annotations

from trio_gitaly.rpc.services.repository.housekeeping import RepositoryHousekeeping
from trio_gitaly.rpc.services.repository.info import RepositoryInfo
from trio_gitaly.rpc.services.repository.lifecycle import RepositoryLifecycle


class RepositoryService(RepositoryLifecycle, RepositoryInfo, RepositoryHousekeeping):
    """Every RepositoryService RPC this server implements."""

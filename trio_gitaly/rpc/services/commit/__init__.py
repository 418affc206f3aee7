"""gitaly.CommitService: history (history.py) and trees and paths (trees.py)."""

from __future__ import annotations

from trio_gitaly.rpc.services.commit.history import CommitHistory
from trio_gitaly.rpc.services.commit.trees import CommitTrees


class CommitService(CommitHistory, CommitTrees):
    """Every CommitService RPC this server implements."""

"""CommitService, trees and paths: tree entries, files, blame, last commits."""

from __future__ import annotations

from trio_gitaly.rpc.services import ServiceBase


class CommitTrees(ServiceBase):
    """Tree and path RPCs (being implemented; until then they answer UNIMPLEMENTED)."""

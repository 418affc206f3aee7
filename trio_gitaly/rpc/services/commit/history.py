"""CommitService, history: finding, listing and counting commits."""

from __future__ import annotations

from trio_gitaly.rpc.services import ServiceBase


class CommitHistory(ServiceBase):
    """History RPCs (being implemented; until then they answer UNIMPLEMENTED)."""

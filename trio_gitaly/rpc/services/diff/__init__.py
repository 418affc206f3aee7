"""gitaly.DiffService: diffs, patches and changed paths."""

from __future__ import annotations

from trio_gitaly.rpc.services import ServiceBase


class DiffService(ServiceBase):
    """DiffService RPCs (being implemented; until then they answer UNIMPLEMENTED)."""

"""gitaly.RefService: branches, tags and references."""

from __future__ import annotations

from trio_gitaly.rpc.services import ServiceBase


class RefService(ServiceBase):
    """RefService's read RPCs (being implemented; until then they answer UNIMPLEMENTED)."""

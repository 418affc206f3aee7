"""gitaly.RefService: branches (branches.py), tags (tags.py), the default branch
(default_branch.py) and plain reference listings (list_refs.py).

Listings run one `git for-each-ref` (trio_gitaly.git.refs) and read the objects refs
point at through one cat-file process of the cache (targets.py).
"""

from __future__ import annotations

from trio_gitaly.rpc.services.ref.branches import Branches
from trio_gitaly.rpc.services.ref.default_branch import DefaultBranch
from trio_gitaly.rpc.services.ref.list_refs import RefListing
from trio_gitaly.rpc.services.ref.tags import Tags


class RefService(DefaultBranch, Branches, Tags, RefListing):
    """Every RefService RPC this server implements (the read RPCs)."""

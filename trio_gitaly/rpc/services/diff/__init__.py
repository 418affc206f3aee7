"""gitaly.DiffService: diffs, patches and changed paths.

commit_diff.py: CommitDiff and CommitDelta (parsed `git diff --raw --patch`, with
Gitaly's limits, in trio_gitaly.git.diff); raw.py: RawDiff and RawPatch; stats.py:
DiffStats; changed_paths.py: FindChangedPaths.
"""

from __future__ import annotations

from trio_gitaly.rpc.services.diff.changed_paths import ChangedPaths
from trio_gitaly.rpc.services.diff.commit_diff import CommitDiffs
from trio_gitaly.rpc.services.diff.raw import RawDiffs
from trio_gitaly.rpc.services.diff.stats import DiffStatistics


class DiffService(CommitDiffs, DiffStatistics, RawDiffs, ChangedPaths):
    """Every DiffService RPC this server implements."""

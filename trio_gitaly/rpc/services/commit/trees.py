"""CommitService, trees and paths: tree entries, files, blame, last commits.

Split by topic: trees_entries.py (TreeEntry, GetTreeEntries), trees_paths.py (ListFiles,
LastCommitForPath, ListLastCommitsForTree), trees_blame.py (RawBlame); tree walking
itself lives in trio_gitaly/git/trees.py.
"""

from __future__ import annotations

from trio_gitaly.rpc.services.commit.trees_blame import CommitTreeBlame
from trio_gitaly.rpc.services.commit.trees_entries import CommitTreeEntries
from trio_gitaly.rpc.services.commit.trees_paths import CommitTreePaths


class CommitTrees(CommitTreeEntries, CommitTreePaths, CommitTreeBlame):
    """Tree and path RPCs."""

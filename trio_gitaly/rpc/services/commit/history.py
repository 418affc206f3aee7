"""CommitService, history: finding, listing and counting commits.

The RPCs live in history_*.py by kind; this class composes them:

- history_find.py: FindCommit, FindCommits (git log).
- history_list.py: ListCommits (rev-list), ListAllCommits (every commit object).
- history_objects.py: CheckObjectsExist, ListCommitsByOid, ListCommitsByRefName,
  GetCommitMessages (cat-file lookups by name).
- history_count.py: CountCommits, CountDivergingCommits, CommitIsAncestor, CommitStats.

Walks run one git process per request (trio_gitaly/git/revlist.py); commit objects are
read through the cat-file cache, never with a process per commit.
"""

from __future__ import annotations

from trio_gitaly.rpc.services.commit.history_count import CountHistory
from trio_gitaly.rpc.services.commit.history_find import FindHistory
from trio_gitaly.rpc.services.commit.history_list import ListHistory
from trio_gitaly.rpc.services.commit.history_objects import ObjectHistory


class CommitHistory(FindHistory, ListHistory, ObjectHistory, CountHistory):
    """The history RPCs of CommitService."""

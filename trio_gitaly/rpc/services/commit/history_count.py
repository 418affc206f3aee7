"""Questions about history answered by one git command: CountCommits,
CountDivergingCommits, CommitIsAncestor and CommitStats."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import GitalyError, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.revision import validate_revision
from trio_gitaly.git.revlist import rev_list_command, rfc3339_utc
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.gen.gitaly import commit_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services.commit.history_common import (
    EMPTY_TREE_IDS,
    HistoryBase,
    read_commit,
    walk_env,
)

if TYPE_CHECKING:
    from trio_gitaly.rpc.call import ServerCall

_INT32_MAX: Final = 2**31 - 1


class CountHistory(HistoryBase):
    """The counting and comparing RPCs."""

    async def CountCommits(
        self, request: commit_pb2.CountCommitsRequest, call: ServerCall
    ) -> commit_pb2.CountCommitsResponse:
        """`git rev-list --count` of a revision (or --all), optionally for one path.

        As in Gitaly, a revision git cannot resolve counts 0 rather than failing.
        """
        repo = open_repo(self._deps.locator, request.repository)
        validate_revision(request.revision, allow_empty=True)
        if not request.revision and not request.all:
            raise invalid_argument("empty Revision and false All")
        flags = ["--count"]
        if request.all:
            flags.append("--all")
        if request.HasField("before"):
            flags.append("--before=" + rfc3339_utc(request.before.seconds))
        if request.HasField("after"):
            flags.append("--after=" + rfc3339_utc(request.after.seconds))
        if request.max_count:
            flags.append(f"--max-count={request.max_count}")
        if request.first_parent:
            flags.append("--first-parent")
        cmd = GitCommand(
            "rev-list",
            flags=flags,
            args=[] if request.all else [os.fsdecode(request.revision)],
            post_sep_args=[os.fsdecode(request.path)] if request.path else [],
        )
        result = await self._deps.git.run(
            cmd,
            repo_path=repo.path,
            env=walk_env(repo, request.global_options),
            check=False,
        )
        if result.returncode != 0:
            return commit_pb2.CountCommitsResponse(count=0)
        text = result.stdout.strip()
        if not text.isdigit():
            raise internal(f"parse count: invalid syntax: {go_quote(text)}")
        return commit_pb2.CountCommitsResponse(count=_int32(int(text)))

    async def CountDivergingCommits(
        self, request: commit_pb2.CountDivergingCommitsRequest, call: ServerCall
    ) -> commit_pb2.CountDivergingCommitsResponse:
        """How many commits each side of `from...to` has (`rev-list --left-right --count`).

        With `max_count` the walk stops early, so the counts may be short (Gitaly's
        documented behaviour).
        """
        source: bytes = getattr(request, "from")
        if not source or not request.to:
            raise invalid_argument("from and to are both required")
        repo = open_repo(self._deps.locator, request.repository)
        flags = ["--count", "--left-right"]
        if request.max_count:
            flags.append(f"--max-count={request.max_count}")
        try:
            cmd = rev_list_command(flags, [source + b"..." + request.to])
        except GitalyError as error:
            raise error.wrap("git rev-list cmd") from None
        result = await self._deps.git.run(cmd, repo_path=repo.path, env=repo.env(), check=False)
        if result.returncode != 0:
            raise internal(f"gi rev-list error: exit status {result.returncode}")
        counts = result.stdout.split()
        if len(counts) != 2 or not all(count.isdigit() for count in counts):
            raise internal(
                "invalid output from git rev-list --left-right: "
                + result.stdout.decode("utf-8", "replace")
            )
        return commit_pb2.CountDivergingCommitsResponse(
            left_count=_int32(int(counts[0])), right_count=_int32(int(counts[1]))
        )

    async def CommitIsAncestor(
        self, request: commit_pb2.CommitIsAncestorRequest, call: ServerCall
    ) -> commit_pb2.CommitIsAncestorResponse:
        """Whether `ancestor_id` is an ancestor of `child_id` (`merge-base --is-ancestor`).

        Anything git cannot answer (unknown revisions, non-commits) is simply false.
        """
        repo = open_repo(self._deps.locator, request.repository)
        if not request.ancestor_id:
            raise invalid_argument("empty ancestor sha")
        if not request.child_id:
            raise invalid_argument("empty child sha")
        for revision in (request.ancestor_id, request.child_id):
            if revision.startswith("-"):
                # Gitaly's command builder refuses it (and its wrapping keeps INTERNAL).
                raise internal(
                    f"positional arg {go_quote(revision)} cannot start with dash '-': "
                    "invalid argument"
                )
        result = await self._deps.git.run(
            GitCommand(
                "merge-base",
                flags=["--is-ancestor"],
                args=[request.ancestor_id, request.child_id],
            ),
            repo_path=repo.path,
            env=repo.env(),
            check=False,
        )
        return commit_pb2.CommitIsAncestorResponse(value=result.returncode == 0)

    async def CommitStats(
        self, request: commit_pb2.CommitStatsRequest, call: ServerCall
    ) -> commit_pb2.CommitStatsResponse:
        """Lines added and deleted and files changed by a commit against its first parent
        (the empty tree for a root commit), from `git diff --numstat`.

        Binary files count as changed files with no lines.
        """
        repo = open_repo(self._deps.locator, request.repository)
        revision = validate_revision(request.revision)
        async with self._objects(repo) as reader:
            commit = await read_commit(reader, revision)
        if commit is None:
            raise internal("object not found")
        base = f"{commit.oid}^" if commit.parents else EMPTY_TREE_IDS[len(commit.oid)]
        result = await self._deps.git.run(
            GitCommand("diff", flags=["--numstat"], args=[base, commit.oid]),
            repo_path=repo.path,
            env=repo.env(),
            check=False,
        )
        if result.returncode != 0:
            raise internal(f"exit status {result.returncode}")
        additions = deletions = files = 0
        for line in result.stdout.splitlines():
            fields = line.split(b"\t", 2)
            if len(fields) != 3:
                raise internal(f"invalid numstat line {go_quote(line)}")
            files += 1
            if fields[0] == b"-" and fields[1] == b"-":
                continue  # a binary file: changed, but no lines to count
            if not fields[0].isdigit() or not fields[1].isdigit():
                raise internal(f"invalid numstat line {go_quote(line)}")
            additions += int(fields[0])
            deletions += int(fields[1])
        return commit_pb2.CommitStatsResponse(
            oid=commit.oid,
            additions=_int32(additions),
            deletions=_int32(deletions),
            files=_int32(files),
        )


def _int32(value: int) -> int:
    """Go's int32 conversion: counts beyond it wrap, as Gitaly's do."""
    return (value + 2**31) % 2**32 - 2**31 if value > _INT32_MAX else value

"""FindCommit (one revision) and FindCommits (the legacy `git log` of the history page)."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.objects import Commit, parse_commit
from trio_gitaly.git.refs import default_branch
from trio_gitaly.git.revision import validate_revision
from trio_gitaly.git.revlist import (
    LOG_RECORD_START,
    LogRecord,
    go_timestamp_text,
    log_format,
    parse_decorations,
    parse_log_record,
    parse_shortstat,
    walk,
)
from trio_gitaly.git.revlist_objects import read_walk
from trio_gitaly.rpc.gen.gitaly import commit_pb2, shared_pb2
from trio_gitaly.rpc.gitproto import git_commit
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services.commit.history_common import HistoryBase, read_commit, walk_env
from trio_gitaly.rpc.streaming import Batcher

if TYPE_CHECKING:
    from trio_gitaly.git.catfile_reader import ObjectInfo
    from trio_gitaly.rpc.call import ServerCall

# git log's complaints that mean "no such revision" (Gitaly's list): FindCommits answers
# them NOT_FOUND with a FindCommitsError; any other failure is INTERNAL.
_NOT_FOUND_STDERR: Final = (
    re.compile(
        rb"fatal: ambiguous argument '.*': unknown revision or path not in the working tree."
    ),
    re.compile(rb"fatal: bad object [0-9a-g]+"),
    re.compile(rb"\Afatal: bad revision '.*'\n\Z"),
    re.compile(rb"fatal: Invalid revision range [0-9a-g]+\.\.[0-9a-g]+"),
)


class FindHistory(HistoryBase):
    """FindCommit and FindCommits."""

    async def FindCommit(
        self, request: commit_pb2.FindCommitRequest, call: ServerCall
    ) -> commit_pb2.FindCommitResponse:
        """The commit a revision names (tags peeled); an empty answer when there is none."""
        repo = open_repo(self._deps.locator, request.repository)
        revision = validate_revision(request.revision)
        async with self._objects(repo) as reader:
            commit = await read_commit(reader, revision)
        if commit is None:
            return commit_pb2.FindCommitResponse()
        return commit_pb2.FindCommitResponse(
            commit=git_commit(commit, with_trailers=request.trailers)
        )

    async def FindCommits(self, request: commit_pb2.FindCommitsRequest, call: ServerCall) -> None:
        """`git log` of a revision (the default branch when none) with its filters.

        A revision git does not know is NOT_FOUND "commits not found" with an empty
        FindCommitsError, as in Gitaly.
        """
        repo = open_repo(self._deps.locator, request.repository)
        validate_revision(request.revision, allow_empty=True)
        revision: bytes | None = request.revision or None
        if revision is None and not request.all:
            try:
                revision = await default_branch(self._deps.git, repo.path, repo.env())
            except GitalyError as error:
                raise GitalyError(
                    StatusCode.INTERNAL, f"defaultBranchName: {error.message}"
                ) from None
        if any(not path for path in request.paths):
            raise invalid_argument("path is empty string")

        # --follow does not mix with --skip, so with both the offset is skipped here.
        manual_offset = request.offset if request.follow and request.offset > 0 else 0
        cmd = _log_command(request, revision, manual_offset)
        batch = Batcher[shared_pb2.GitCommit](
            call, lambda items: commit_pb2.FindCommitsResponse(commits=items)
        )
        env = walk_env(repo, request.global_options)
        seen = 0

        def select(record: bytes) -> tuple[bytes, LogRecord] | None:
            nonlocal seen
            if not record:
                return None  # the empty piece before the first record's separator
            seen += 1
            if seen <= manual_offset:
                return None
            entry = parse_log_record(record)
            return entry.oid.encode(), entry

        async def sink(entry: LogRecord, info: ObjectInfo | None, data: bytes) -> bool:
            if info is None:
                raise internal(f"cat-file get commit {entry.oid!r}: object not found")
            await batch.add(self._with_extras(request, entry, parse_commit(info.oid, data)))
            return True

        expected = request.limit if request.limit >= 0 else -1
        async with (
            self._walk_objects(repo, expected=expected) as objects,
            walk(
                self._deps.git, cmd, repo_path=repo.path, env=env, separator=LOG_RECORD_START
            ) as records,
        ):
            await read_walk(records, objects, select, sink)
            # Gitaly sends what it found before it looks at git's exit status.
            await batch.flush()
            if records.returncode:
                raise _log_error(records.stderr)

    @staticmethod
    def _with_extras(
        request: commit_pb2.FindCommitsRequest, entry: LogRecord, commit: Commit
    ) -> shared_pb2.GitCommit:
        message = git_commit(commit, with_trailers=request.trailers)
        if request.include_referenced_by:
            message.referenced_by.extend(parse_decorations(entry.decorations))
        if request.include_shortstat and entry.shortstat is not None:
            stat = parse_shortstat(entry.shortstat)
            message.short_stats.CopyFrom(
                shared_pb2.CommitStatInfo(
                    additions=stat.additions, deletions=stat.deletions, changed_files=stat.files
                )
            )
        return message


def _log_command(
    request: commit_pb2.FindCommitsRequest, revision: bytes | None, manual_offset: int
) -> GitCommand:
    """Gitaly's git log command line for a FindCommits request, flag for flag."""
    flags = [log_format(decorations=bool(request.include_referenced_by))]
    if request.offset > 0 and not manual_offset:
        flags.append(f"--skip={request.offset}")
    flags.append(f"--max-count={request.limit + manual_offset}")
    if request.follow and request.paths:
        flags.append("--follow")
    if request.author:
        flags.append("--author=" + os.fsdecode(request.author))
    if request.skip_merges:
        flags.append("--no-merges")
    if request.HasField("before"):
        flags.append("--before=" + go_timestamp_text(request.before.seconds, request.before.nanos))
    if request.HasField("after"):
        flags.append("--after=" + go_timestamp_text(request.after.seconds, request.after.nanos))
    if request.all:
        flags += ["--all", "--reverse"]
    if request.first_parent:
        flags.append("--first-parent")
    if request.order == commit_pb2.FindCommitsRequest.TOPO:
        flags.append("--topo-order")
    if request.include_shortstat:
        flags.append("--shortstat")
    if request.include_referenced_by:
        flags.append("--decorate=full")
        flags += ["--decorate-refs=" + os.fsdecode(p) for p in request.include_referenced_by]
    return GitCommand(
        "log",
        flags=flags,
        args=[] if revision is None else [os.fsdecode(revision)],
        post_sep_args=[os.fsdecode(path) for path in request.paths],
    )


def _log_error(stderr: bytes) -> GitalyError:
    if any(pattern.search(stderr) for pattern in _NOT_FOUND_STDERR):
        return GitalyError(
            StatusCode.NOT_FOUND, "commits not found", detail=commit_pb2.FindCommitsError()
        )
    return GitalyError(
        StatusCode.INTERNAL,
        "listing commits failed",
        metadata={"stderr": stderr.decode("utf-8", "replace")},
    )

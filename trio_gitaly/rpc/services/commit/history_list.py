"""ListCommits (a rev-list walk with filters) and ListAllCommits (every commit object)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import GitalyError, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.objects import parse_commit
from trio_gitaly.git.revision import validate_revision
from trio_gitaly.git.revlist import Records, go_time_string, rev_list_command, walk
from trio_gitaly.git.revlist_objects import ObjectPipe, read_walk
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.gen.gitaly import commit_pb2, shared_pb2
from trio_gitaly.rpc.gitproto import git_commit
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services.commit.history_common import HistoryBase
from trio_gitaly.rpc.streaming import Batcher

if TYPE_CHECKING:
    from trio_gitaly.git.catfile_reader import ObjectInfo, ObjectReader
    from trio_gitaly.rpc.call import ServerCall

_ORDER_FLAGS: Final = {
    commit_pb2.ListCommitsRequest.TOPO: "--topo-order",
    commit_pb2.ListCommitsRequest.DATE: "--date-order",
}
# The batch-check format of ListAllCommits' object listing.
_ALL_OBJECTS_FORMAT: Final = "--batch-check=%(objectname) %(objecttype)"


class ListHistory(HistoryBase):
    """ListCommits and ListAllCommits."""

    async def ListCommits(self, request: commit_pb2.ListCommitsRequest, call: ServerCall) -> None:
        """The commits `git rev-list <revisions>` walks (pseudo-revisions allowed), read
        through cat-file, after the page token and up to the page limit."""
        repo = open_repo(self._deps.locator, request.repository)
        if not request.revisions:
            raise invalid_argument("missing revisions")
        revisions = []
        for revision in request.revisions:
            try:
                revisions.append(validate_revision(revision, allow_pseudo=True))
            except GitalyError as error:
                raise error.wrap("invalid revision") from None
        cmd = rev_list_command(_rev_list_flags(request), revisions)
        batch = Batcher[shared_pb2.GitCommit](
            call, lambda items: commit_pb2.ListCommitsResponse(commits=items)
        )
        pagination = request.pagination_params
        async with (
            self._walk_objects(repo, expected=_expected(pagination)) as objects,
            walk(self._deps.git, cmd, repo_path=repo.path, env=repo.env()) as records,
        ):
            complete = await _send_page(records, objects, batch, pagination, typed=False)
            if complete and records.returncode:
                raise internal(
                    "iterating objects: rev-list pipeline command: "
                    f"exit status {records.returncode}, stderr: {go_quote(records.stderr)}"
                )
        await batch.flush()

    async def ListAllCommits(
        self, request: commit_pb2.ListAllCommitsRequest, call: ServerCall
    ) -> None:
        """Every commit object in the repository's object directories, reachable or not.

        With a quarantine (`git_object_directory`) that is the quarantine's commits plus
        those of the alternates the request names; Rails names none to get only the
        pushed ones.
        """
        repo = open_repo(self._deps.locator, request.repository)
        cmd = GitCommand(
            "cat-file",
            flags=[_ALL_OBJECTS_FORMAT, "--batch-all-objects", "--buffer", "--unordered"],
            end_of_options=False,
        )
        batch = Batcher[shared_pb2.GitCommit](
            call, lambda items: commit_pb2.ListAllCommitsResponse(commits=items)
        )
        pagination = request.pagination_params
        async with (
            self._walk_objects(repo, expected=_expected(pagination)) as objects,
            walk(self._deps.git, cmd, repo_path=repo.path, env=repo.env()) as records,
        ):
            complete = await _send_page(records, objects, batch, pagination, typed=True)
            if complete and records.returncode:
                raise internal(
                    f"iterating objects: cat-file failed: exit status {records.returncode}, "
                    f"stderr: {go_quote(records.stderr)}"
                )
        await batch.flush()


def _rev_list_flags(request: commit_pb2.ListCommitsRequest) -> list[str]:
    """Gitaly's rev-list options for a ListCommits request, in its order."""
    flags = []
    if request.order in _ORDER_FLAGS:
        flags.append(_ORDER_FLAGS[request.order])
    if request.reverse:
        flags.append("--reverse")
    if request.max_parents > 0:
        flags.append(f"--max-parents={request.max_parents}")
    if request.disable_walk:
        flags.append("--no-walk")
    if request.first_parent:
        flags.append("--first-parent")
    for option, field in (("--before", "before"), ("--after", "after")):
        if request.HasField(field):
            stamp = getattr(request, field)
            text = go_time_string(stamp.seconds, stamp.nanos)
            if text is not None:
                flags.append(f"{option}={text}")
    if request.author:
        flags.append("--author=" + os.fsdecode(request.author))
    if request.ignore_case:
        flags.append("--regexp-ignore-case")
    flags += ["--grep=" + os.fsdecode(pattern) for pattern in request.commit_message_patterns]
    if request.skip > 0:
        flags.append(f"--skip={request.skip}")
    return flags


def _expected(pagination: shared_pb2.PaginationParameter) -> int:
    """How many commits a page reads at most; -1 when unbounded (limit <= 0 here)."""
    return pagination.limit if pagination.limit > 0 else -1


async def _send_page(
    records: Records,
    objects: ObjectPipe | ObjectReader,
    batch: Batcher[shared_pb2.GitCommit],
    pagination: shared_pb2.PaginationParameter,
    *,
    typed: bool,
) -> bool:
    """Send the commits of a walk after the page token, up to the page limit.

    Records are "<oid>" lines, or with `typed` "<oid> <type>" lines of which only
    commits are sent. Gitaly's paging here: every object up to and including the token
    is skipped whatever its type (a token never seen means an empty page), and a limit
    of zero or less means no limit. Returns whether the walk was read to its end.

    Cancellation: as the walk's, the objects' and the batcher's.
    """
    token = pagination.page_token.encode()
    limit = pagination.limit
    waiting = bool(token)
    sent = 0

    def select(record: bytes) -> tuple[bytes, None] | None:
        nonlocal waiting
        oid, _, kind = record.partition(b" ") if typed else (record, b"", b"commit")
        if waiting:
            waiting = oid != token
            return None
        return (oid, None) if kind == b"commit" else None

    async def sink(_: None, info: ObjectInfo | None, data: bytes) -> bool:
        nonlocal sent
        if 0 < limit <= sent:
            return False
        if info is None:
            raise internal("requesting object: object not found")
        await batch.add(git_commit(parse_commit(info.oid, data)))
        sent += 1
        return True

    return await read_walk(records, objects, select, sink)

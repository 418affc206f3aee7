"""DiffService: FindChangedPaths, `git diff-tree --stdin` over commits and tree pairs."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Final

import trio

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument, not_found
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.diff import StreamReader
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import diff_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.rpc.services.diff.common import wait_error
from trio_gitaly.rpc.streaming import Batcher

if TYPE_CHECKING:
    from trio_gitaly.git.catfile import ObjectReader

_Request = diff_pb2.FindChangedPathsRequest
_Status = diff_pb2.ChangedPaths

#: git's status letters and what they are reported as; others are never asked for.
STATUSES: Final = {
    ord("M"): _Status.MODIFIED,
    ord("D"): _Status.DELETED,
    ord("T"): _Status.TYPE_CHANGE,
    ord("C"): _Status.COPIED,
    ord("A"): _Status.ADDED,
    ord("R"): _Status.RENAMED,
}
#: Gitaly's rename similarity threshold for FindChangedPaths.
RENAME_THRESHOLD: Final = "30%"


class ChangedPaths(ServiceBase):
    """FindChangedPaths."""

    async def FindChangedPaths(self, request: _Request, call: ServerCall) -> None:
        """Stream the paths each commit (against its parents, or given ones) or tree pair
        changes, in batches.

        Cancellation: git is killed; what was sent stays sent.
        """
        repo = open_repo(self._deps.locator, request.repository)
        requests = list(request.requests)
        if request.commits:
            if requests:
                raise invalid_argument("cannot specify both commits and requests")
            requests = [
                _Request.Request(commit_request=_Request.Request.CommitRequest(commit_revision=c))
                for c in request.commits
            ]
        async with self._deps.catfile.reader(
            repo.path,
            object_dir=repo.object_dirs.object_dir,
            alternate_dirs=repo.object_dirs.alternates,
        ) as reader:
            lines = [await _resolve_request(reader, item) for item in requests]
        if any(line is None for line in lines):
            raise internal("unknown FindChangedPathsRequest type")
        stdin = "".join(f"{line}\n" for line in lines) if lines else "\n"
        batch: Batcher[diff_pb2.ChangedPaths] = Batcher(
            call, lambda paths: diff_pb2.FindChangedPathsResponse(paths=paths)
        )
        async with self._deps.git.spawn(
            GitCommand("diff-tree", flags=_flags(request)),
            repo_path=repo.path,
            env=repo.env(),
            stdin=subprocess.PIPE,
        ) as process:
            assert process.stdin is not None
            assert process.stdout is not None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_feed, process.stdin, stdin.encode())
                output = StreamReader(process.stdout)
                while (changes := await _next_changes(output)) is not None:
                    for change in changes:
                        await batch.add(change)
            returncode = await process.wait()
            stderr = process.stderr_tail()
        if returncode != 0:
            raise wait_error(
                StatusCode.FAILED_PRECONDITION, returncode, "cmd wait err", stderr=stderr
            )
        await batch.flush()


def _flags(request: _Request) -> list[str]:
    flags = ["-z", "--stdin", "-r", "--no-commit-id"]
    # Root commits are compared with the empty tree rather than skipped.
    flags += ["--root", "--diff-filter=AMDTCR"]
    flags.append(f"--find-renames={RENAME_THRESHOLD}" if request.find_renames else "--no-renames")
    mode = request.merge_commit_diff_mode
    if mode == _Request.MERGE_COMMIT_DIFF_MODE_ALL_PARENTS:
        flags.append("-c")  # a merge's paths changed against every parent, once
    elif mode in (
        _Request.MERGE_COMMIT_DIFF_MODE_UNSPECIFIED,
        _Request.MERGE_COMMIT_DIFF_MODE_INCLUDE_MERGES,
    ):
        flags.append("-m")  # a merge's changes against each parent in turn
    return flags


async def _resolve_request(reader: ObjectReader, item: _Request.Request) -> str | None:
    """The `git diff-tree --stdin` line for one request, every revision resolved to an
    object id of the right type; None for a request of no known type."""
    kind = item.WhichOneof("type")
    if kind == "commit_request":
        commit = item.commit_request
        oids = [await _resolve(reader, commit.commit_revision, "commit", "resolving commit")]
        oids += [
            await _resolve(reader, parent, "commit", "resolving commit parent")
            for parent in commit.parent_commit_revisions
        ]
        return " ".join(oids)
    if kind == "tree_request":
        tree = item.tree_request
        left = await _resolve(reader, tree.left_tree_revision, "tree", "resolving left tree")
        right = await _resolve(reader, tree.right_tree_revision, "tree", "resolving right tree")
        return f"{left} {right}"
    return None


async def _resolve(reader: ObjectReader, revision: str, kind: str, context: str) -> str:
    if not revision:
        raise invalid_argument(f"{context}: revision cannot be empty")
    try:
        info = await reader.info(f"{revision}^{{{kind}}}")
    except GitalyError as error:
        raise error.wrap(context) from None
    if info is None:
        raise not_found(f"{context}: revision can not be found: {go_quote(revision)}")
    return info.oid


async def _feed(stream: trio.abc.SendStream, data: bytes) -> None:
    try:
        async with stream:
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # git stopped reading; its exit status tells why


async def _next_changes(output: StreamReader) -> list[diff_pb2.ChangedPaths] | None:
    """The changes of the next raw entry: one per source (parent) of a combined entry.

    -z raw output is ":<modes> <oids> <status>\\0<path>\\0", with "<old path>\\0" before the
    path for a rename or copy; a combined (-c) entry starts with one colon per parent.
    What diff-tree echoes for tree pairs precedes the colon and is skipped.
    """
    _, complete = await output.read_until(b":")
    if not complete:
        return None
    header, complete = await output.read_until(b"\0")
    if not complete:
        return None
    fields = header[:-1].split(b" ")
    sources = fields[0].rfind(b":") + 2
    fields[0] = fields[0][sources - 1 :]
    statuses = bytes(ch for ch in fields[-1] if ch in STATUSES)  # scores dropped
    if len(fields) != 2 * sources + 3 or len(statuses) != sources:
        raise internal(f"parsing err: next path err: git diff-tree parsing failed on: {header!r}")
    old_path = b""
    if len(statuses) == 1 and statuses[0] in (ord("R"), ord("C")):
        value, complete = await output.read_until(b"\0")
        if not complete:
            return None
        old_path = value[:-1]
    path, complete = await output.read_until(b"\0")
    if not complete:
        return None
    new_mode = _mode(fields[sources])
    new_blob_id = fields[-2].decode()
    return [
        diff_pb2.ChangedPaths(
            status=STATUSES[status],
            old_path=old_path,
            path=path[:-1],
            old_mode=_mode(fields[index]),
            new_mode=new_mode,
            old_blob_id=fields[sources + 1 + index].decode(),
            new_blob_id=new_blob_id,
        )
        for index, status in enumerate(statuses)
    ]


def _mode(value: bytes) -> int:
    try:
        return int(value, 8)
    except ValueError:
        raise internal(f"parsing err: next path err: parsing mode: {value!r}") from None

"""CommitService RawBlame: `git blame --porcelain` output, streamed as git writes it."""

from __future__ import annotations

import re
from typing import Final

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.command import READ_CHUNK_BYTES
from trio_gitaly.git.revision import validate_revision
from trio_gitaly.git.trees import is_local
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import commit_pb2, errors_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services.commit.trees_common import TreesBase, arg
from trio_gitaly.rpc.streaming import CHUNK_BYTES

# Gitaly's validBlameRange: "start,end", digits only.
_RANGE_RE: Final = re.compile(rb"[0-9]+,[0-9]+")
# git's messages, matched against the whole of stderr as Gitaly matches them.
_NO_SUCH_PATH_PREFIX: Final = b"fatal: no such path "
_LINE_COUNT_RE: Final = re.compile(rb"fatal: file [^\n]* has only ([0-9]+) lines?\n")


class CommitTreeBlame(TreesBase):
    """RawBlame."""

    async def RawBlame(self, request: commit_pb2.RawBlameRequest, call: ServerCall) -> None:
        """`git blame -p [-L start,end] <revision> -- <path>` in data chunks of 128 KiB.

        A missing path is NOT_FOUND with RawBlameError.path_not_found; a range past the
        end of the file is INVALID_ARGUMENT with RawBlameError.out_of_range.

        Cancellation: git is killed; the client may have part of the output.
        """
        repo = open_repo(self._deps.locator, request.repository)
        revision = validate_revision(request.revision)
        path = request.path
        if not path:
            raise invalid_argument("empty Path")
        if not is_local(path):
            raise invalid_argument("path escapes repository root", path=path)
        if request.range and not _RANGE_RE.fullmatch(request.range):
            raise invalid_argument("invalid Range")
        flags = ["-p"]
        if request.range:
            flags.append("-L" + request.range.decode("ascii"))
        cmd = GitCommand("blame", flags=flags, args=[arg(revision)], post_sep_args=[arg(path)])
        async with self._deps.git.spawn(cmd, repo_path=repo.path, env=repo.env()) as git:
            assert git.stdout is not None
            pending = bytearray()
            while chunk := await git.stdout.receive_some(READ_CHUNK_BYTES):
                pending += chunk
                while len(pending) >= CHUNK_BYTES:
                    await call.send(commit_pb2.RawBlameResponse(data=bytes(pending[:CHUNK_BYTES])))
                    del pending[:CHUNK_BYTES]
            if pending:
                await call.send(commit_pb2.RawBlameResponse(data=bytes(pending)))
            returncode = await git.wait()
            stderr = git.stderr_tail()
        if returncode != 0:
            raise _blame_error(request.path, returncode, stderr)


def _blame_error(path: bytes, returncode: int, stderr: bytes) -> GitalyError:
    """The error Gitaly derives from git blame's stderr."""
    if stderr.startswith(_NO_SUCH_PATH_PREFIX):
        return GitalyError(
            StatusCode.NOT_FOUND,
            "path not found in revision",
            detail=commit_pb2.RawBlameError(path_not_found=errors_pb2.PathNotFoundError(path=path)),
        )
    match = _LINE_COUNT_RE.fullmatch(stderr)
    if match is not None:
        lines = int(match.group(1))
        if lines >= 2**64:
            return internal("failed parsing actual lines")
        return GitalyError(
            StatusCode.INVALID_ARGUMENT,
            "range is outside of the file length",
            detail=commit_pb2.RawBlameError(
                out_of_range=commit_pb2.RawBlameError.OutOfRangeError(actual_lines=lines)
            ),
        )
    return internal(f"blaming file: exit status {returncode}", stderr=stderr)

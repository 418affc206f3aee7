"""DiffService: RawDiff and RawPatch, git's own output passed through in chunks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from google.protobuf.message import Message

from trio_gitaly.errors import StatusCode
from trio_gitaly.git.args import GitCommand
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import diff_pb2
from trio_gitaly.rpc.repo import Repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.rpc.services.diff.common import check_positional, validate_left_right, wait_error
from trio_gitaly.rpc.streaming import CHUNK_BYTES

#: The signature line `git format-patch` ends each patch with (Gitaly's).
PATCH_SIGNATURE: Final = "GitLab"


class RawDiffs(ServiceBase):
    """RawDiff (`git diff --full-index`) and RawPatch (`git format-patch --stdout`)."""

    async def RawDiff(self, request: diff_pb2.RawDiffRequest, call: ServerCall) -> None:
        """Stream `git diff --full-index <left> <right>` unchanged.

        Cancellation: git is killed; what was sent stays sent.
        """
        repo = validate_left_right(self._deps.locator, request)
        check_positional(request.left_commit_id, request.right_commit_id)
        cmd = GitCommand(
            "diff", flags=["--full-index"], args=[request.left_commit_id, request.right_commit_id]
        )
        await self._pass_through(repo, cmd, call, lambda data: diff_pb2.RawDiffResponse(data=data))

    async def RawPatch(self, request: diff_pb2.RawPatchRequest, call: ServerCall) -> None:
        """Stream `git format-patch --stdout <left>..<right>` unchanged.

        Cancellation: git is killed; what was sent stays sent.
        """
        repo = validate_left_right(self._deps.locator, request)
        commit_range = f"{request.left_commit_id}..{request.right_commit_id}"
        check_positional(commit_range)
        cmd = GitCommand(
            "format-patch",
            flags=["--stdout", f"--signature={PATCH_SIGNATURE}"],
            args=[commit_range],
        )
        await self._pass_through(repo, cmd, call, lambda data: diff_pb2.RawPatchResponse(data=data))

    async def _pass_through(
        self, repo: Repo, cmd: GitCommand, call: ServerCall, make: Callable[[bytes], Message]
    ) -> None:
        """Send git's stdout in chunks of at most `CHUNK_BYTES`; a failed git is INTERNAL
        "cmd: exit status N" (Gitaly's), whatever was sent before."""
        async with self._deps.git.spawn(cmd, repo_path=repo.path, env=repo.env()) as process:
            assert process.stdout is not None
            while data := await process.stdout.receive_some(CHUNK_BYTES):
                await call.send(make(bytes(data)))
            returncode = await process.wait()
            stderr = process.stderr_tail()
        if returncode != 0:
            raise wait_error(StatusCode.INTERNAL, returncode, "cmd", stderr=stderr)

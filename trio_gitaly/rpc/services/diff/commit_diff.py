"""DiffService: CommitDiff (parsed patches with limits) and CommitDelta (changes only)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from trio_gitaly.errors import StatusCode, internal
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.diff import OBJECT_HEX_LENGTHS, Diff, DiffParseError, DiffParser, Limits
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import diff_pb2
from trio_gitaly.rpc.repo import Repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.rpc.services.diff.common import (
    check_positional,
    object_format,
    validate_left_right,
    wait_error,
)

#: Gitaly's message size for patch data and delta batches (its `msgSizeThreshold`).
MSG_SIZE_THRESHOLD: Final = 5 * 1024
#: Gitaly's rename similarity threshold for CommitDiff.
COMMIT_DIFF_RENAME_THRESHOLD: Final = "30%"
# A repository's diff.noprefix would drop the a/ and b/ the header match relies on.
_DIFF_CONFIG: Final = (("diff.noprefix", "false"),)

_Request = diff_pb2.CommitDiffRequest


class CommitDiffs(ServiceBase):
    """CommitDiff and CommitDelta: `git diff --raw [--patch]` between two commits."""

    async def CommitDiff(self, request: _Request, call: ServerCall) -> None:
        """Stream each changed file with its patch, under the request's limits.

        Cancellation: git is killed; what was sent stays sent.
        """
        repo = validate_left_right(self._deps.locator, request)
        fmt = await object_format(self._deps.git, repo)
        flags = [
            "--patch",
            "--raw",
            f"--abbrev={OBJECT_HEX_LENGTHS[fmt]}",
            "--full-index",
            f"--find-renames={COMMIT_DIFF_RENAME_THRESHOLD}",
        ]
        if request.whitespace_changes == _Request.WHITESPACE_CHANGES_IGNORE_ALL:
            flags.append("--ignore-all-space")
        elif request.whitespace_changes == _Request.WHITESPACE_CHANGES_IGNORE:
            flags.append("--ignore-space-change")
        if request.diff_mode == _Request.WORDDIFF:
            flags.append("--word-diff=porcelain")
        sender = _PatchSender(call)
        await self._each_diff(
            repo,
            fmt,
            _diff_command(flags, request.left_commit_id, request.right_commit_id, request.paths),
            _limits(request),
            sender.finish,
            on_patch=sender.data,
        )

    async def CommitDelta(self, request: diff_pb2.CommitDeltaRequest, call: ServerCall) -> None:
        """Stream the changed files (no patches) in batches.

        Cancellation: git is killed; what was sent stays sent.
        """
        repo = validate_left_right(self._deps.locator, request)
        fmt = await object_format(self._deps.git, repo)
        flags = ["--raw", f"--abbrev={OBJECT_HEX_LENGTHS[fmt]}", "--full-index", "--find-renames"]
        batch: list[diff_pb2.CommitDelta] = []
        batch_size = 0

        async def add(diff: Diff) -> None:
            nonlocal batch, batch_size
            batch.append(
                diff_pb2.CommitDelta(
                    from_path=diff.from_path,
                    to_path=diff.to_path,
                    from_id=diff.from_id,
                    to_id=diff.to_id,
                    old_mode=diff.old_mode,
                    new_mode=diff.new_mode,
                )
            )
            # Gitaly's estimate of a delta's size: ids, paths and 4 bytes per mode; a
            # batch is sent as soon as it is past the threshold.
            batch_size += len(diff.from_id) + len(diff.to_id) + 8
            batch_size += len(diff.from_path) + len(diff.to_path)
            if batch_size > MSG_SIZE_THRESHOLD:
                await call.send(diff_pb2.CommitDeltaResponse(deltas=batch))
                batch, batch_size = [], 0

        await self._each_diff(
            repo,
            fmt,
            _diff_command(flags, request.left_commit_id, request.right_commit_id, request.paths),
            Limits(),
            add,
        )
        if batch:
            await call.send(diff_pb2.CommitDeltaResponse(deltas=batch))

    async def _each_diff(
        self,
        repo: Repo,
        fmt: str,
        cmd: GitCommand,
        limits: Limits,
        handle: Callable[[Diff], Awaitable[None]],
        *,
        on_patch: Callable[[Diff, bytes], Awaitable[None]] | None = None,
    ) -> None:
        """Run `cmd`, parse its output and hand each file to `handle`; then check git's
        exit: a parse failure is INTERNAL, a failed git FAILED_PRECONDITION (Gitaly's)."""
        async with self._deps.git.spawn(
            cmd, repo_path=repo.path, env=repo.env(), config=_DIFF_CONFIG
        ) as process:
            assert process.stdout is not None
            parser = DiffParser(process.stdout, fmt, limits, on_patch=on_patch)
            try:
                while (diff := await parser.next_diff()) is not None:
                    await handle(diff)
            except DiffParseError as exc:
                raise internal(f"parse failure: {exc}") from None
            returncode = await process.wait()
            stderr = process.stderr_tail()
        if returncode != 0:
            raise wait_error(StatusCode.FAILED_PRECONDITION, returncode, stderr=stderr)


def _diff_command(flags: list[str], left: str, right: str, paths: Sequence[bytes]) -> GitCommand:
    check_positional(left, right)
    # Paths are bytes; surrogateescape gives git exactly those bytes in its argv.
    return GitCommand(
        "diff", flags=flags, args=[left, right], post_sep_args=[os.fsdecode(p) for p in paths]
    )


def _limits(request: _Request) -> Limits:
    # The hard limits only count with enforce_limits; the safe ones always (Gitaly's).
    hard = request.enforce_limits
    return Limits(
        enforce_limits=hard,
        collapse_diffs=request.collapse_diffs,
        collect_all_paths=request.collect_all_paths,
        max_files=request.max_files if hard else 0,
        max_lines=request.max_lines if hard else 0,
        max_bytes=request.max_bytes if hard else 0,
        max_patch_bytes=request.max_patch_bytes if hard else 0,
        max_patch_bytes_for_file_extension=(
            dict(request.max_patch_bytes_for_file_extension) if hard else {}
        ),
        safe_max_files=request.safe_max_files,
        safe_max_lines=request.safe_max_lines,
        safe_max_bytes=request.safe_max_bytes,
    )


class _PatchSender:
    """Sends a file's patch in `MSG_SIZE_THRESHOLD` pieces, as Gitaly does.

    The first message of a file carries its fields, later ones only patch data, the last
    `end_of_patch`. Data arrives either all at once (`finish`) or, when the parser
    streams, in parts (`data`, then `finish` with the rest); a part is held back until
    more than a message's worth is pending, so the split is the same either way.
    """

    def __init__(self, call: ServerCall) -> None:
        self._call = call
        self._pending = bytearray()
        self._started = False

    async def data(self, diff: Diff, data: bytes) -> None:
        """Queue patch bytes of `diff`, sending every full message but the last."""
        self._pending += data
        start = 0
        while len(self._pending) - start > MSG_SIZE_THRESHOLD:
            await self._send(diff, bytes(self._pending[start : start + MSG_SIZE_THRESHOLD]))
            start += MSG_SIZE_THRESHOLD
        del self._pending[:start]

    async def finish(self, diff: Diff) -> None:
        """Send the rest of `diff`'s patch (`diff.patch`), ending it."""
        await self.data(diff, diff.patch)
        await self._send(diff, bytes(self._pending), end=True)
        self._pending.clear()
        self._started = False

    async def _send(self, diff: Diff, data: bytes, *, end: bool = False) -> None:
        if self._started:
            response = diff_pb2.CommitDiffResponse()
        else:
            self._started = True
            response = diff_pb2.CommitDiffResponse(
                from_path=diff.from_path,
                to_path=diff.to_path,
                from_id=diff.from_id,
                to_id=diff.to_id,
                old_mode=diff.old_mode,
                new_mode=diff.new_mode,
                binary=diff.binary,
                overflow_marker=diff.overflow_marker,
                collapsed=diff.collapsed,
                too_large=diff.too_large,
            )
        response.raw_patch_data = data
        response.end_of_patch = end
        await self._call.send(response)

"""DiffService: DiffStats, `git diff --numstat -z` per path."""

from __future__ import annotations

import re
from typing import Final

from trio_gitaly.errors import StatusCode, internal
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.diff import StreamReader
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import diff_pb2
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.rpc.services.diff.common import (
    check_positional,
    validate_left_right,
    wait_error,
)

#: Stats per message (Gitaly's maxNumStatBatchSize): a count, not a size.
STATS_BATCH_SIZE: Final = 1000
# A count as Go's ParseInt(s, 10, 32) takes it: optional sign, decimal digits, int32.
_COUNT_RE: Final = re.compile(rb"[+-]?[0-9]+")
_INT32_MAX: Final = 2**31 - 1


class DiffStatistics(ServiceBase):
    """DiffStats."""

    async def DiffStats(self, request: diff_pb2.DiffStatsRequest, call: ServerCall) -> None:
        """Stream additions and deletions per changed path, renames with their old path.

        Cancellation: git is killed; what was sent stays sent.
        """
        repo = validate_left_right(self._deps.locator, request)
        check_positional(request.left_commit_id, request.right_commit_id)
        cmd = GitCommand(
            "diff",
            flags=["--numstat", "-z"],
            args=[request.left_commit_id, request.right_commit_id],
        )
        batch: list[diff_pb2.DiffStats] = []
        async with self._deps.git.spawn(cmd, repo_path=repo.path, env=repo.env()) as process:
            assert process.stdout is not None
            fields = StreamReader(process.stdout)
            while (stat := await _next_stat(fields)) is not None:
                batch.append(stat)
                if len(batch) == STATS_BATCH_SIZE:
                    await call.send(diff_pb2.DiffStatsResponse(stats=batch))
                    batch = []
            returncode = await process.wait()
            stderr = process.stderr_tail()
        if returncode != 0:
            raise wait_error(StatusCode.FAILED_PRECONDITION, returncode, stderr=stderr)
        if batch:
            await call.send(diff_pb2.DiffStatsResponse(stats=batch))


async def _field(reader: StreamReader) -> bytes | None:
    # A field cut off by EOF ends the output, as in Gitaly: git's exit status decides.
    value, complete = await reader.read_until(b"\0")
    return value[:-1] if complete else None


async def _next_stat(fields: StreamReader) -> diff_pb2.DiffStats | None:
    # Each entry is "<added>\t<deleted>\t<path>\0", or for a rename or copy
    # "<added>\t<deleted>\t\0<old path>\0<new path>\0"; binary files count "-".
    entry = await _field(fields)
    if entry is None:
        return None
    parts = entry.split(b"\t", 2)
    if len(parts) != 3:
        raw = (entry + b"\0").decode("utf-8", "replace")
        raise internal(f"error parsing {go_quote(raw)}")
    stat = diff_pb2.DiffStats(additions=_count(parts[0]), deletions=_count(parts[1]))
    if parts[2]:
        stat.path = parts[2]
        return stat
    old_path = await _field(fields)
    new_path = await _field(fields)
    if old_path is None or new_path is None:
        return None
    stat.old_path = old_path
    stat.path = new_path
    return stat


def _count(value: bytes) -> int:
    if value == b"-":
        return 0
    number = int(value) if _COUNT_RE.fullmatch(value) else None
    if number is None or not -_INT32_MAX - 1 <= number <= _INT32_MAX:
        raise internal(f"error converting diff num stat: {value.decode('utf-8', 'replace')}")
    return number

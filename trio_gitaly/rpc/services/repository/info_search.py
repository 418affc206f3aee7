"""SearchFilesByName: the paths of a tree, under a path query, matching a Go regexp.

Gitaly runs `git ls-tree --full-tree --name-status -r -z <ref> -- <query>`, keeps the
paths its (Go) filter matches, skips `offset` of them and stops after `limit` (0 or
less: no limit). A ref git cannot resolve gives an empty answer, not an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import re2
import trio

from trio_gitaly.errors import internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.rpc.gen.gitaly import repository_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.streaming import MESSAGE_BUDGET_BYTES

if TYPE_CHECKING:
    from trio_gitaly.rpc.call import ServerCall
    from trio_gitaly.rpc.services import Dependencies

#: Longest filter accepted, in bytes (Gitaly's searchFilesFilterMaxLength).
FILTER_MAX_BYTES: Final = 1000
_READ_BYTES: Final = 64 * 1024
# Protobuf framing of one `repeated bytes` element beyond its data: tag and length.
_FIELD_OVERHEAD_BYTES: Final = 6


async def search_files_by_name(
    deps: Dependencies, request: repository_pb2.SearchFilesByNameRequest, call: ServerCall
) -> None:
    """Answer one SearchFilesByName request.

    Gitaly sends all paths in one message; we send them in messages under
    MESSAGE_BUDGET_BYTES (the same single message unless that one would be too large
    for gRPC's default limit), and one empty message when nothing matched.

    Cancellation: git ls-tree is killed; a filter batch already running in a worker
    thread (one read's worth of paths, about a millisecond) finishes first.
    """
    repo = open_repo(deps.locator, request.repository)
    if not request.query:
        raise invalid_argument("no query given")
    if not request.ref:
        raise invalid_argument("no ref given")
    if request.ref.startswith(b"-"):
        raise invalid_argument("invalid ref argument")
    matcher = _compile_filter(request.filter)
    ref = request.ref.decode("utf-8", "surrogateescape")
    if "\0" in ref or "\0" in request.query:
        # git cannot be started with such an argument; Gitaly fails the same way.
        raise internal("cmd start failed: argument contains nul: invalid argument")

    cmd = GitCommand(
        "ls-tree",
        # -z: paths verbatim, unquoted; --full-tree: the query is relative to the root.
        flags=["--full-tree", "--name-status", "-r", "-z"],
        args=[ref],
        post_sep_args=[request.query],
    )
    sender = _PathSender(call)
    skip, limit = request.offset, request.limit
    async with deps.git.spawn(cmd, repo_path=repo.path, env=repo.env()) as proc:
        assert proc.stdout is not None
        pending = b""
        while chunk := await proc.stdout.receive_some(_READ_BYTES):
            paths = (pending + chunk).split(b"\0")
            pending = paths.pop()
            if matcher is not None:
                paths = await trio.to_thread.run_sync(_matching, matcher, paths)
            for path in paths:
                # Gitaly counts matches from 1 and keeps those past `offset`.
                skip -= 1
                if skip < 0:
                    await sender.add(path)
                if limit > 0 and sender.count >= limit:
                    await sender.finish()
                    return
        # ls-tree's exit status is ignored: an unknown ref is an empty answer.
    await sender.finish()


def _compile_filter(pattern: str) -> Any:
    """The filter as an RE2 expression, or None when there is none.

    Gitaly filters with Go's regexp, which is RE2: same syntax, and matching in time
    linear in the path, so a client's pattern cannot tie the server up. The error text
    is RE2's, after Go's "error parsing regexp: " prefix.
    """
    if not pattern:
        return None
    if len(pattern.encode()) > FILTER_MAX_BYTES:
        raise invalid_argument("filter exceeds maximum length")
    options = re2.Options()
    options.log_errors = False  # RE2 would print to our stderr, outside the log stream
    try:
        return re2.compile(pattern.encode(), options=options)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args else str(exc)
        raise invalid_argument(f"filter did not compile: error parsing regexp: {reason}") from None


def _matching(matcher: Any, paths: list[bytes]) -> list[bytes]:
    return [path for path in paths if matcher.search(_as_go_sees_it(path))]


# Each byte that is not valid UTF-8 surfaces as one surrogate under "surrogateescape".
_INVALID_BYTES: Final = {code: 0xFFFD for code in range(0xDC80, 0xDD00)}


def _as_go_sees_it(path: bytes) -> bytes:
    """Go's regexp reads each invalid UTF-8 byte as one U+FFFD; RE2 in C++ does not."""
    return path.decode("utf-8", "surrogateescape").translate(_INVALID_BYTES).encode()


class _PathSender:
    """Paths in SearchFilesByNameResponse messages under MESSAGE_BUDGET_BYTES."""

    def __init__(self, call: ServerCall) -> None:
        self._call = call
        self._files: list[bytes] = []
        self._size = 0
        self._messages = 0
        self.count = 0

    async def add(self, path: bytes) -> None:
        size = len(path) + _FIELD_OVERHEAD_BYTES
        if self._files and self._size + size >= MESSAGE_BUDGET_BYTES:
            await self._send()
        self._files.append(path)
        self._size += size
        self.count += 1

    async def finish(self) -> None:
        """Send what is pending; an empty message if nothing was sent at all."""
        if self._files or not self._messages:
            await self._send()

    async def _send(self) -> None:
        files, self._files, self._size = self._files, [], 0
        self._messages += 1
        await self._call.send(repository_pb2.SearchFilesByNameResponse(files=files))

"""RepositoryService, read-only questions about a repository.

HasLocalBranches, FindMergeBase and CalculateChecksum ask git; RepositorySize and
RepositoryInfo walk the repository directory (in a worker thread, never on the event
loop); SearchFilesByName lists a tree (info_search.py). Behaviour, codes and messages are
Gitaly's (internal/gitaly/service/repository/).
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import Final

import trio

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import repository_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.rpc.services.repository.info_search import search_files_by_name
from trio_gitaly.storage.usage import (
    FILES_BACKEND,
    REFTABLE_BACKEND,
    RepositoryStats,
    directory_size,
    repository_stats,
)
from trio_gitaly.storage.usage_formats import UsageError

#: CalculateChecksum of a repository without (checksummed) references.
ZERO_CHECKSUM: Final = "0" * 40
# The references CalculateChecksum covers. Gitaly searches the whole "<oid> <ref>" line,
# unanchored, so "refs/remotes/origin/HEAD" and "refs/x/refs/heads/y" count too.
_CHECKSUMMED_REFS: Final = re.compile(
    rb"HEAD|(refs/(heads|tags|keep-around|merge-requests|environments|notes)/)"
)
_READ_BYTES: Final = 64 * 1024

_ReferencesInfo = repository_pb2.RepositoryInfoResponse.ReferencesInfo
_BACKENDS: Final = {
    FILES_BACKEND: _ReferencesInfo.REFERENCE_BACKEND_FILES,
    REFTABLE_BACKEND: _ReferencesInfo.REFERENCE_BACKEND_REFTABLE,
}


class RepositoryInfo(ServiceBase):
    """HasLocalBranches, RepositorySize, RepositoryInfo, FindMergeBase, CalculateChecksum,
    SearchFilesByName."""

    async def HasLocalBranches(
        self, request: repository_pb2.HasLocalBranchesRequest, call: ServerCall
    ) -> repository_pb2.HasLocalBranchesResponse:
        """Whether any reference exists under refs/heads/."""
        repo = open_repo(self._deps.locator, request.repository)
        cmd = GitCommand(
            "for-each-ref", flags=["--format=%(refname)", "--count=1"], args=["refs/heads/"]
        )
        result = await self._deps.git.run(cmd, repo_path=repo.path, env=repo.env())
        return repository_pb2.HasLocalBranchesResponse(value=bool(result.stdout.strip()))

    async def RepositorySize(
        self, request: repository_pb2.RepositorySizeRequest, call: ServerCall
    ) -> repository_pb2.RepositorySizeResponse:
        """Apparent size of the repository directory in KiB, rounded down.

        Cancellation: the walk stops at its next directory (it polls for cancellation in
        its worker thread), so nothing outlives the RPC.
        """
        path = self._deps.locator.repo_path(request.repository)
        try:
            size = await trio.to_thread.run_sync(
                functools.partial(directory_size, path, checkpoint=trio.from_thread.check_cancelled)
            )
        except UsageError as exc:
            raise internal(f"calculating directory size: {exc}") from exc
        return repository_pb2.RepositorySizeResponse(size=size // 1024)

    async def RepositoryInfo(
        self, request: repository_pb2.RepositoryInfoRequest, call: ServerCall
    ) -> repository_pb2.RepositoryInfoResponse:
        """Size in bytes and what the references and objects occupy.

        Cancellation: as RepositorySize.
        """
        path = self._deps.locator.repo_path(request.repository)
        size, stats = await trio.to_thread.run_sync(_measure, path)
        return _repository_info(size, stats)

    async def FindMergeBase(
        self, request: repository_pb2.FindMergeBaseRequest, call: ServerCall
    ) -> repository_pb2.FindMergeBaseResponse:
        """git merge-base of two or more revisions; empty when there is none or git fails."""
        repo = open_repo(self._deps.locator, request.repository)
        revisions = [rev.decode("utf-8", "surrogateescape") for rev in request.revisions]
        if len(revisions) < 2:
            raise invalid_argument("at least 2 revisions are required")
        for revision in revisions:
            # Gitaly's command validation refuses these as an Internal error.
            if revision.startswith("-"):
                raise internal(
                    f"cmd: positional arg {go_quote(revision)} cannot start with dash '-': "
                    "invalid argument"
                )
            if "\0" in revision:
                raise internal("cmd: revision contains nul: invalid argument")
        result = await self._deps.git.run(
            GitCommand("merge-base", args=revisions),
            repo_path=repo.path,
            env=repo.env(),
            check=False,
        )
        if result.returncode != 0:
            return repository_pb2.FindMergeBaseResponse(base="")
        base = result.stdout.removesuffix(b"\n").decode("utf-8", "replace")
        return repository_pb2.FindMergeBaseResponse(base=base)

    async def CalculateChecksum(
        self, request: repository_pb2.CalculateChecksumRequest, call: ServerCall
    ) -> repository_pb2.CalculateChecksumResponse:
        """XOR of the SHA-1s of the `<oid> <ref>` lines of `git show-ref --head` for HEAD
        and the well-known namespaces, in hex without leading zero bytes.

        The zero checksum when there is no such reference or show-ref fails on a valid
        repository; DATA_LOSS "not a git repository" when git cannot read it at all.
        """
        repo = open_repo(self._deps.locator, request.repository)
        checksum = 0
        cmd = GitCommand("show-ref", flags=["--head"])
        async with self._deps.git.spawn(cmd, repo_path=repo.path, env=repo.env()) as proc:
            assert proc.stdout is not None
            pending = b""
            while chunk := await proc.stdout.receive_some(_READ_BYTES):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    checksum ^= _line_checksum(line)
            if pending:
                checksum ^= _line_checksum(pending)
            returncode = await proc.wait()
        if returncode != 0 or checksum == 0:
            if await self._is_bare_repository(repo.path, repo.env()):
                return repository_pb2.CalculateChecksumResponse(checksum=ZERO_CHECKSUM)
            raise GitalyError(StatusCode.DATA_LOSS, f"not a git repository '{repo.path}'")
        digest = checksum.to_bytes((checksum.bit_length() + 7) // 8, "big")
        return repository_pb2.CalculateChecksumResponse(checksum=digest.hex())

    async def SearchFilesByName(
        self, request: repository_pb2.SearchFilesByNameRequest, call: ServerCall
    ) -> None:
        """Paths of the tree at `ref` under `query`, filtered by a Go regexp, paginated."""
        await search_files_by_name(self._deps, request, call)

    async def _is_bare_repository(self, path: str, env: dict[str, str]) -> bool:
        result = await self._deps.git.run(
            GitCommand("rev-parse", flags=["--is-bare-repository"]),
            repo_path=path,
            env=env,
            check=False,
        )
        answer = result.stdout.decode("utf-8", "replace").rstrip("\n")
        return result.returncode == 0 and answer.lower() == "true"


def _line_checksum(line: bytes) -> int:
    if line.endswith(b"\r"):
        line = line[:-1]  # as bufio.ScanLines
    if not _CHECKSUMMED_REFS.search(line):
        return 0
    return int.from_bytes(hashlib.sha1(line).digest(), "big")


def _measure(path: str) -> tuple[int, RepositoryStats]:
    try:
        size = directory_size(path, checkpoint=trio.from_thread.check_cancelled)
    except UsageError as exc:
        raise internal(f"calculating repository size: {exc}") from exc
    try:
        stats = repository_stats(path)
    except UsageError as exc:
        raise internal(f"deriving repository info: {exc}") from exc
    return size, stats


def _repository_info(size: int, stats: RepositoryStats) -> repository_pb2.RepositoryInfoResponse:
    loose, packs, refs = stats.loose_objects, stats.packfiles, stats.references
    return repository_pb2.RepositoryInfoResponse(
        size=size,
        references=_ReferencesInfo(
            loose_count=refs.loose_count,
            packed_size=refs.packed_size,
            reference_backend=_BACKENDS[refs.backend],
        ),
        objects=repository_pb2.RepositoryInfoResponse.ObjectsInfo(
            size=loose.size + packs.size,
            # Stale loose objects and cruft packs hold what is unreachable or about to be.
            recent_size=(loose.size - loose.stale_size) + (packs.size - packs.cruft_size),
            stale_size=loose.stale_size + packs.cruft_size,
            keep_size=packs.keep_size,
        ),
    )

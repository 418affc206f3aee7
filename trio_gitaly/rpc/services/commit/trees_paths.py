"""CommitService ListFiles, LastCommitForPath and ListLastCommitsForTree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import trio

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.catfile_reader import ObjectReader
from trio_gitaly.git.objects import Commit, TreeEntry, parse_commit
from trio_gitaly.git.revision import validate_revision
from trio_gitaly.git.trees import SORT_RANK, is_local, stream_ls_tree
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import commit_pb2
from trio_gitaly.rpc.gitproto import git_commit
from trio_gitaly.rpc.repo import Repo, open_repo
from trio_gitaly.rpc.services.commit.trees_common import TreesBase, arg
from trio_gitaly.rpc.streaming import Batcher

#: Commits per ListLastCommitsForTree message (Gitaly's maxNumStatBatchSize).
LAST_COMMITS_PER_MESSAGE: Final = 10
#: `git log -1 -- <path>` processes run at once for one ListLastCommitsForTree message:
#: each is mostly waiting on object reads, so a few overlap well even on two cores.
LOG_CONCURRENCY: Final = 4
# Where Gitaly looks for a default branch after HEAD's target (git.DefaultRef, LegacyDefaultRef).
_FALLBACK_BRANCHES: Final = (b"refs/heads/main", b"refs/heads/master")


class CommitTreePaths(TreesBase):
    """ListFiles, LastCommitForPath and ListLastCommitsForTree."""

    async def ListFiles(self, request: commit_pb2.ListFilesRequest, call: ServerCall) -> None:
        """Every blob path of the revision's tree (default branch when empty), in chunks.

        An unknown revision answers one empty message, as Gitaly does.

        Cancellation: git ls-tree is killed; part of the list may have been sent.
        """
        repo = open_repo(self._deps.locator, request.repository)
        revision = validate_revision(request.revision, allow_empty=True)
        if not revision:
            branch = await self._default_branch(repo)
            if not branch:
                raise GitalyError(
                    StatusCode.FAILED_PRECONDITION, "repository does not have a default branch"
                )
            revision = branch
        if not await self._has_revision(repo, revision):
            await call.send(commit_pb2.ListFilesResponse())
            return
        batch: Batcher[commit_pb2.ListFilesResponse] = Batcher(
            call,
            lambda items: commit_pb2.ListFilesResponse(
                paths=[path for item in items for path in item.paths]
            ),
        )

        async def add(entry: TreeEntry) -> None:
            if entry.kind == "blob":
                await batch.add(commit_pb2.ListFilesResponse(paths=[entry.path]))

        # Gitaly never looks at ls-tree's exit status here: a revision that is not a
        # tree (a blob) lists nothing and succeeds.
        await stream_ls_tree(
            self._deps.git,
            GitCommand(
                "ls-tree", flags=["-z", "-r", "--full-tree", "--full-name"], args=[arg(revision)]
            ),
            repo_path=repo.path,
            env=repo.env(),
            on_entry=add,
        )
        await batch.flush()

    async def LastCommitForPath(
        self, request: commit_pb2.LastCommitForPathRequest, call: ServerCall
    ) -> commit_pb2.LastCommitForPathResponse:
        """The newest commit touching `path` from `revision` (`git log -1 -- path`).

        A path no commit touched gives an empty response.
        """
        repo = open_repo(self._deps.locator, request.repository)
        revision = validate_revision(request.revision)
        path = request.path
        if path not in (b"", b"/"):
            if path.startswith(b"/"):
                raise invalid_argument("path is an absolute path", path=path)
            if not is_local(path):
                raise invalid_argument("path escapes repository", path=path)
        else:
            path = b"."
        literal = request.global_options.literal_pathspecs or request.literal_pathspec
        commit_id = await self._last_commit_id(repo, revision, path, literal)
        if commit_id is None:
            return commit_pb2.LastCommitForPathResponse()
        async with self._reader(repo) as reader:
            commit = await _read_commit(reader, commit_id)
        if commit is None:
            return commit_pb2.LastCommitForPathResponse()
        return commit_pb2.LastCommitForPathResponse(commit=git_commit(commit))

    async def ListLastCommitsForTree(
        self, request: commit_pb2.ListLastCommitsForTreeRequest, call: ServerCall
    ) -> None:
        """For `limit` entries of the tree at `path` from `offset`: the last commit of each.

        Entries are listed by `git ls-tree` (trees, then blobs, then submodules) and sent
        ten per message.

        Cancellation: running git processes are killed; earlier messages stay sent.
        """
        repo = open_repo(self._deps.locator, request.repository)
        revision = validate_revision(request.revision)
        if request.offset < 0:
            raise invalid_argument("offset negative")
        if request.limit < 0:
            raise invalid_argument("limit negative")
        path = b"." if request.path in (b"", b"/") else request.path
        literal = request.global_options.literal_pathspecs
        entries: list[TreeEntry] = []

        async def collect(entry: TreeEntry) -> None:
            entries.append(entry)

        returncode = await stream_ls_tree(
            self._deps.git,
            GitCommand(
                "ls-tree",
                flags=["-z", "--full-name"],
                args=[arg(revision)],
                post_sep_args=[arg(path)],
            ),
            repo_path=repo.path,
            env=_env(repo, literal),
            on_entry=collect,
        )
        if returncode != 0:
            raise internal(f"exit status {returncode}")
        entries.sort(key=lambda entry: SORT_RANK.get(entry.kind, 0))
        offset = request.offset
        if offset >= len(entries):
            return
        wanted = entries[offset : min(offset + request.limit, len(entries))]
        async with self._reader(repo) as reader:
            for start in range(0, len(wanted), LAST_COMMITS_PER_MESSAGE):
                group = wanted[start : start + LAST_COMMITS_PER_MESSAGE]
                ids = await self._last_commit_ids(repo, revision, [e.path for e in group], literal)
                commits = []
                for entry, commit_id in zip(group, ids, strict=True):
                    commit = None if commit_id is None else await _read_commit(reader, commit_id)
                    if commit is None:
                        raise internal("object not found", path=entry.path)
                    commits.append(
                        commit_pb2.ListLastCommitsForTreeResponse.CommitForTree(
                            commit=git_commit(commit), path_bytes=entry.path
                        )
                    )
                await call.send(commit_pb2.ListLastCommitsForTreeResponse(commits=commits))

    async def _last_commit_ids(
        self, repo: Repo, revision: bytes, paths: Sequence[bytes], literal: bool
    ) -> list[str | None]:
        """`_last_commit_id` for each path, `LOG_CONCURRENCY` at a time, in order.

        Cancellation: every running git log is killed.
        """
        results: list[str | None] = [None] * len(paths)
        errors: list[BaseException] = []
        limiter = trio.CapacityLimiter(LOG_CONCURRENCY)

        async def one(index: int, path: bytes) -> None:
            async with limiter:
                try:
                    results[index] = await self._last_commit_id(repo, revision, path, literal)
                except GitalyError as error:
                    # Raised after the nursery, as itself rather than in a group.
                    errors.append(error)
                    nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for index, path in enumerate(paths):
                nursery.start_soon(one, index, path)
        if errors:
            raise errors[0]
        return results

    async def _last_commit_id(
        self, repo: Repo, revision: bytes, path: bytes, literal: bool
    ) -> str | None:
        """`git log --format=%H --max-count=1 <revision> -- <path>`: a commit id or None.

        Raises:
            GitalyError: INTERNAL "logging last commit for path: exit status N" when git
                fails (an unknown revision).
        """
        result = await self._deps.git.run(
            GitCommand(
                "log",
                flags=["--format=%H", "--max-count=1"],
                args=[arg(revision)],
                post_sep_args=[arg(path)],
            ),
            repo_path=repo.path,
            env=_env(repo, literal),
            check=False,
        )
        if result.returncode != 0:
            raise internal(f"logging last commit for path: exit status {result.returncode}")
        if not result.stdout:
            return None
        commit_id, newline, rest = result.stdout.partition(b"\n")
        if not newline or rest:
            raise internal("unexpected git log output")
        return commit_id.decode("ascii")

    async def _default_branch(self, repo: Repo) -> bytes:
        """Gitaly's GetDefaultBranch: HEAD's target, main, master or the first branch.

        Returns b"" when the repository has no branch at all.

        Raises:
            GitalyError: NOT_FOUND 'revision not found ""' when HEAD is not symbolic.
        """
        result = await self._deps.git.run(
            GitCommand("symbolic-ref", args=["HEAD"]),
            repo_path=repo.path,
            env=repo.env(),
            check=False,
        )
        head, newline, rest = result.stdout.partition(b"\n")
        if result.returncode != 0 or not newline or rest:
            raise GitalyError(StatusCode.NOT_FOUND, 'revision not found ""')
        for candidate in (head, *_FALLBACK_BRANCHES):
            if await self._has_revision(repo, candidate):
                return candidate
        result = await self._deps.git.run(
            GitCommand(
                "for-each-ref", flags=["--format=%(refname)", "--count=1"], args=["refs/heads/"]
            ),
            repo_path=repo.path,
            env=repo.env(),
        )
        return result.stdout.partition(b"\n")[0]

    async def _has_revision(self, repo: Repo, revision: bytes) -> bool:
        """Whether `git rev-parse --verify` resolves `revision` (Gitaly's HasRevision)."""
        if revision.startswith(b"-"):
            return False
        result = await self._deps.git.run(
            GitCommand("rev-parse", flags=["--verify"], args=[arg(revision)]),
            repo_path=repo.path,
            env=repo.env(),
            check=False,
        )
        return result.returncode == 0


def _env(repo: Repo, literal: bool) -> dict[str, str]:
    # Gitaly's GlobalOptions.literal_pathspecs: pathspec magic (":(glob)", "*") off.
    env = repo.env()
    if literal:
        env["GIT_LITERAL_PATHSPECS"] = "1"
    return env


async def _read_commit(reader: ObjectReader, commit_id: str) -> Commit | None:
    """The commit `commit_id` names (peeled), parsed; None when it is missing."""
    found = await reader.read(commit_id + "^{commit}")
    if found is None:
        return None
    info, data = found
    return parse_commit(info.oid, data)

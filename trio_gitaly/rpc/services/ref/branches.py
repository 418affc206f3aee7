"""FindLocalBranches, FindAllBranches and FindBranch: branches with their target commits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import GitalyError, StatusCode, internal, invalid_argument
from trio_gitaly.git.command import GitCommandError
from trio_gitaly.git.refs import RefListingError, default_branch, for_each_ref
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.gen.gitaly import ref_pb2, shared_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.rpc.services.ref.targets import PageWindow, open_targets
from trio_gitaly.rpc.streaming import Batcher

if TYPE_CHECKING:
    from collections.abc import Sequence

    from trio_gitaly.rpc.call import ServerCall

#: FindLocalBranchesRequest.SortBy -> for-each-ref --sort key.
LOCAL_BRANCH_SORT: Final = {
    ref_pb2.FindLocalBranchesRequest.NAME: "refname",
    ref_pb2.FindLocalBranchesRequest.UPDATED_ASC: "committerdate",
    ref_pb2.FindLocalBranchesRequest.UPDATED_DESC: "-committerdate",
}
BRANCH_FIELDS: Final = ("refname", "objectname")
_HEADS: Final = b"refs/heads/"


def as_argument(value: bytes) -> str:
    """Client bytes as a git argument: the same bytes on git's command line."""
    return value.decode("utf-8", "surrogateescape")


def refuse_dash_patterns(patterns: Sequence[str], prefix: str) -> None:
    """Gitaly's answer to a ref pattern that looks like an option: INTERNAL, not a spawn."""
    for pattern in patterns:
        if pattern.startswith("-"):
            raise internal(
                f"{prefix}positional arg {go_quote(pattern)} cannot start with dash '-': "
                "invalid argument"
            )


def finding_refs_error(error: GitalyError) -> GitalyError:
    """An error of the listing as Gitaly's findRefs words it (the code is kept)."""
    if isinstance(error, RefListingError):
        return error.wrap("finding refs")
    return error.wrap("finding refs: sending lines")


class Branches(ServiceBase):
    """FindLocalBranches, FindAllBranches, FindBranch."""

    async def FindLocalBranches(
        self, request: ref_pb2.FindLocalBranchesRequest, call: ServerCall
    ) -> None:
        """refs/heads/* with their commits, sorted and paginated (page token: a ref name).

        Cancellation: for-each-ref is killed and the cat-file process discarded.
        """
        repo = open_repo(self._deps.locator, request.repository)
        window = PageWindow(
            request.pagination_params if request.HasField("pagination_params") else None
        )
        async with open_targets(self._deps, repo) as targets:
            sort = LOCAL_BRANCH_SORT.get(request.sort_by)
            if sort is None:
                # Gitaly panics here; its panic handler answers so.
                raise internal("panic: never reached")
            batch: Batcher[shared_pb2.Branch] = Batcher(
                call, lambda items: ref_pb2.FindLocalBranchesResponse(local_branches=items)
            )
            try:
                async with for_each_ref(
                    self._deps.git,
                    repo.path,
                    env=repo.env(),
                    fields=BRANCH_FIELDS,
                    patterns=("refs/heads",),
                    sort=sort,
                ) as records:
                    while not window.full and (record := await records.next()) is not None:
                        name, oid = record
                        if window.admit(name):
                            commit = await targets.commit(oid.decode())
                            await batch.add(shared_pb2.Branch(name=name, target_commit=commit))
            except GitalyError as error:
                raise finding_refs_error(error) from error
        window.check("invalid page token: sending lines: could not find page token")
        await batch.flush()

    async def FindAllBranches(
        self, request: ref_pb2.FindAllBranchesRequest, call: ServerCall
    ) -> None:
        """Local and remote-tracking branches; with merged_only, those merged into the
        default branch (and among merged_branches when given).

        Cancellation: for-each-ref is killed and the cat-file process discarded.
        """
        repo = open_repo(self._deps.locator, request.repository)
        patterns = ["refs/heads", "refs/remotes"]
        merged: str | None = None
        if request.merged_only:
            try:
                target = await default_branch(self._deps.git, repo.path, repo.env())
            except GitCommandError as error:
                raise internal(f"default branch name: exit status {error.returncode}") from error
            merged = as_argument(target)
            if request.merged_branches:
                patterns = [as_argument(name) for name in request.merged_branches]
        refuse_dash_patterns(patterns, "finding refs: spawning for-each-ref: ")
        batch: Batcher[ref_pb2.FindAllBranchesResponse.Branch] = Batcher(
            call, lambda items: ref_pb2.FindAllBranchesResponse(branches=items)
        )
        async with open_targets(self._deps, repo) as targets:
            try:
                async with for_each_ref(
                    self._deps.git,
                    repo.path,
                    env=repo.env(),
                    fields=BRANCH_FIELDS,
                    patterns=patterns,
                    merged=merged,
                ) as records:
                    async for name, oid in records:
                        commit = await targets.commit(oid.decode())
                        await batch.add(
                            ref_pb2.FindAllBranchesResponse.Branch(name=name, target=commit)
                        )
            except GitalyError as error:
                raise finding_refs_error(error) from error
        await batch.flush()

    async def FindBranch(
        self, request: ref_pb2.FindBranchRequest, call: ServerCall
    ) -> ref_pb2.FindBranchResponse:
        """The branch refs/heads/<name> (name as given, even "refs/heads/x"); an empty
        answer when there is none, INVALID_ARGUMENT when the name matches another ref.

        Cancellation: git and a mid-read cat-file process are killed.
        """
        repo = open_repo(self._deps.locator, request.repository)
        if not request.name:
            raise invalid_argument("Branch name cannot be empty")
        reference = _HEADS + request.name
        # Gitaly looks the name up as a for-each-ref pattern (so "b*" finds "branch" and
        # is then refused as ambiguous); the first match in name order decides.
        async with for_each_ref(
            self._deps.git,
            repo.path,
            env=repo.env(),
            fields=BRANCH_FIELDS,
            patterns=(as_argument(reference),),
            count=1,
        ) as records:
            found = [record async for record in records]
        if not found:
            return ref_pb2.FindBranchResponse()
        name, oid = found[0]
        if name != reference:
            raise GitalyError(
                StatusCode.INVALID_ARGUMENT,
                "target reference is ambiguous: reference is ambiguous: "
                f"conflicts with {go_quote(name)}",
            )
        async with open_targets(self._deps, repo) as targets:
            commit = await targets.commit(oid.decode())
        return ref_pb2.FindBranchResponse(
            branch=shared_pb2.Branch(name=request.name, target_commit=commit)
        )

"""FindDefaultBranchName: the branch GitLab shows first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trio_gitaly.errors import internal
from trio_gitaly.git.command import GitCommandError
from trio_gitaly.git.refs import default_branch, head_reference
from trio_gitaly.rpc.gen.gitaly import ref_pb2
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services import ServiceBase

if TYPE_CHECKING:
    from trio_gitaly.rpc.call import ServerCall


class DefaultBranch(ServiceBase):
    """FindDefaultBranchName."""

    async def FindDefaultBranchName(
        self, request: ref_pb2.FindDefaultBranchNameRequest, call: ServerCall
    ) -> ref_pb2.FindDefaultBranchNameResponse:
        """HEAD's target with head_only; else Gitaly's rule (HEAD's target if it exists,
        main, master, the first branch, or empty). A detached HEAD is INTERNAL, as in
        Gitaly.

        Cancellation: the running git command is killed.
        """
        repo = open_repo(self._deps.locator, request.repository)
        if request.head_only:
            try:
                name = await head_reference(self._deps.git, repo.path, repo.env())
            except GitCommandError as error:
                raise internal(f"head reference: exit status {error.returncode}") from error
        else:
            try:
                name = await default_branch(self._deps.git, repo.path, repo.env())
            except GitCommandError as error:
                raise internal(f"get default branch: exit status {error.returncode}") from error
        return ref_pb2.FindDefaultBranchNameResponse(name=name)

"""RepositoryService, lifecycle: whether a repository exists, creating and removing one.

A repository appears and disappears by a single rename, so no client ever sees half of
one: it is built in the storage's temporary directory (same filesystem, so the rename
is atomic), synced, then renamed into place; removal renames it out before deleting.
"""

from __future__ import annotations

import os

import trio

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.args import GitCommand
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import repository_pb2, shared_pb2
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.storage.durable import publish_repository, stage_removal
from trio_gitaly.storage.tempdir import new_tempdir

_OBJECT_FORMATS = {
    shared_pb2.OBJECT_FORMAT_UNSPECIFIED: None,
    shared_pb2.OBJECT_FORMAT_SHA1: "sha1",
    shared_pb2.OBJECT_FORMAT_SHA256: "sha256",
}
_FORMAT_ENUMS = {"sha1": shared_pb2.OBJECT_FORMAT_SHA1, "sha256": shared_pb2.OBJECT_FORMAT_SHA256}


class RepositoryLifecycle(ServiceBase):
    """Repository lifecycle RPCs."""

    async def RepositoryExists(
        self, request: repository_pb2.RepositoryExistsRequest, call: ServerCall
    ) -> repository_pb2.RepositoryExistsResponse:
        """Whether the repository exists and is a git directory; never NOT_FOUND for it."""
        path = self._deps.locator.repo_path(request.repository, must_exist=False)
        try:
            self._deps.locator.validate_repo_dir(path)
        except GitalyError as error:
            if error.code not in (StatusCode.NOT_FOUND, StatusCode.FAILED_PRECONDITION):
                raise
            return repository_pb2.RepositoryExistsResponse(exists=False)
        return repository_pb2.RepositoryExistsResponse(exists=True)

    async def ObjectFormat(
        self, request: repository_pb2.ObjectFormatRequest, call: ServerCall
    ) -> repository_pb2.ObjectFormatResponse:
        """The repository's object hash: sha1 or sha256 (NOT_FOUND when it is missing)."""
        path = self._deps.locator.repo_path(request.repository)
        result = await self._deps.git.run(
            GitCommand("rev-parse", flags=["--show-object-format"]), repo_path=path
        )
        name = result.stdout.decode().strip()
        if name not in _FORMAT_ENUMS:
            raise GitalyError(StatusCode.INTERNAL, f"unknown object format {name!r}")
        return repository_pb2.ObjectFormatResponse(format=_FORMAT_ENUMS[name])

    async def CreateRepository(
        self, request: repository_pb2.CreateRepositoryRequest, call: ServerCall
    ) -> repository_pb2.CreateRepositoryResponse:
        """Create an empty bare repository; ALREADY_EXISTS when one is there.

        Cancellation: the half-built repository in the temporary directory is removed;
        the target path is untouched unless the final rename already happened.
        """
        repo = request.repository
        target = self._deps.locator.repo_path(repo, must_exist=False)
        if request.object_format not in _OBJECT_FORMATS:
            raise GitalyError(
                StatusCode.INVALID_ARGUMENT, f"unknown object format: {request.object_format}"
            )
        object_format = _OBJECT_FORMATS[request.object_format]
        if await trio.to_thread.run_sync(os.path.lexists, target):
            raise GitalyError(StatusCode.ALREADY_EXISTS, "repository exists already")
        flags = ["--bare", "--quiet"]
        if request.default_branch:
            flags.append(f"--initial-branch={request.default_branch.decode('utf-8', 'replace')}")
        if object_format is not None:
            flags.append(f"--object-format={object_format}")

        async with new_tempdir(
            self._deps.locator, repo.storage_name, prefix="repo-create-"
        ) as staging:
            built = os.path.join(staging, "repo")
            init = await self._deps.git.run(
                GitCommand("init", flags=flags, args=[built]), repo_path=None, check=False
            )
            if init.returncode != 0:
                raise GitalyError(
                    StatusCode.INTERNAL,
                    f"creating repository: {_first_line(init.stderr) or 'git init failed'}",
                )
            with self._deps.repo_counter.tracking(repo.storage_name, target) as change:
                await trio.to_thread.run_sync(publish_repository, built, target)
                change.record(+1)
        return repository_pb2.CreateRepositoryResponse()

    async def RemoveRepository(
        self, request: repository_pb2.RemoveRepositoryRequest, call: ServerCall
    ) -> repository_pb2.RemoveRepositoryResponse:
        """Move the repository out of the storage atomically, then delete it.

        Cancellation: once renamed out, the repository is gone for clients whatever
        happens; the deletion still runs to completion (shielded), so nothing is left
        in the temporary directory.
        """
        repo = request.repository
        path = self._deps.locator.repo_path(repo)
        async with new_tempdir(
            self._deps.locator, repo.storage_name, prefix=os.path.basename(path) + "+removed-"
        ) as staging:
            with self._deps.repo_counter.tracking(repo.storage_name, path) as change:
                await trio.to_thread.run_sync(stage_removal, path, staging)
                change.record(-1)
        return repository_pb2.RemoveRepositoryResponse()


def _first_line(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else ""

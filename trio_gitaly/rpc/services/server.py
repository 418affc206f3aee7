"""gitaly.ServerService: versions, storage health and disk usage of this server."""

from __future__ import annotations

import trio

from trio_gitaly import __version__
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import server_pb2
from trio_gitaly.rpc.services import Dependencies
from trio_gitaly.storage.filesystem import StorageStatus, disk_usage, storage_status
from trio_gitaly.storage.locator import Locator, Storage
from trio_gitaly.storage.metadata import read_filesystem_id

# ReadinessCheck's bound when the client sets none (Gitaly's default).
DEFAULT_READINESS_TIMEOUT_S = 15.0


class ServerService:
    """Server-wide questions; no repository is involved."""

    def __init__(self, deps: Dependencies) -> None:
        self._deps = deps

    async def ServerInfo(
        self, request: server_pb2.ServerInfoRequest, call: ServerCall
    ) -> server_pb2.ServerInfoResponse:
        """Versions, and per storage: readable, writeable, filesystem type and id."""
        response = server_pb2.ServerInfoResponse(
            server_version=__version__, git_version=str(self._deps.git_binary.version)
        )
        # access(2), the mount table and the metadata file can block on network
        # filesystems: all storages in one worker-thread hop (GitLab polls this often).
        statuses = await trio.to_thread.run_sync(_storage_statuses, self._deps.locator)
        for storage, status, filesystem_id in statuses:
            response.storage_statuses.add(
                storage_name=storage.name,
                readable=status.readable,
                writeable=status.writeable,
                fs_type=status.fs_type,
                filesystem_id=filesystem_id,
            )
        return response

    async def DiskStatistics(
        self, request: server_pb2.DiskStatisticsRequest, call: ServerCall
    ) -> server_pb2.DiskStatisticsResponse:
        """Available and used bytes of each storage's filesystem."""
        response = server_pb2.DiskStatisticsResponse()
        for storage in self._deps.locator.storages:
            available, used = await trio.to_thread.run_sync(disk_usage, storage.path)
            response.storage_statuses.add(storage_name=storage.name, available=available, used=used)
        return response

    async def ReadinessCheck(
        self, request: server_pb2.ReadinessCheckRequest, call: ServerCall
    ) -> server_pb2.ReadinessCheckResponse:
        """Run the readiness checks within the request's timeout; list what failed."""
        timeout = DEFAULT_READINESS_TIMEOUT_S
        if request.HasField("timeout"):
            timeout = request.timeout.ToTimedelta().total_seconds()
        Failure = server_pb2.ReadinessCheckResponse.Failure
        failed: list[server_pb2.ReadinessCheckResponse.Failure.Response] = []
        with trio.move_on_after(timeout) as scope:
            failed = await self._failed_checks()
        if scope.cancelled_caught:
            failed.append(Failure.Response(name="timeout", error_message="checks timed out"))
        if failed:
            return server_pb2.ReadinessCheckResponse(failure_response=Failure(failed_checks=failed))
        return server_pb2.ReadinessCheckResponse(ok_response=server_pb2.ReadinessCheckResponse.Ok())

    async def _failed_checks(self) -> list[server_pb2.ReadinessCheckResponse.Failure.Response]:
        Check = server_pb2.ReadinessCheckResponse.Failure.Response
        failed = []
        if not self._deps.lifecycle.ready:
            failed.append(Check(name="server", error_message="server is not ready"))
        for storage in self._deps.locator.storages:
            status = await trio.to_thread.run_sync(storage_status, storage.path)
            if not (status.readable and status.writeable):
                failed.append(
                    Check(
                        name=f"storage {storage.name}",
                        error_message=f"storage {storage.path!r} is not readable and writeable",
                    )
                )
        return failed


def _storage_statuses(locator: Locator) -> list[tuple[Storage, StorageStatus, str]]:
    return [
        (storage, storage_status(storage.path), read_filesystem_id(storage.path))
        for storage in locator.storages
    ]

"""grpc.health.v1.Health: SERVING while the server is ready, NOT_SERVING once it stops."""

from __future__ import annotations

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.grpc.health.v1 import health_pb2
from trio_gitaly.rpc.services import Dependencies

Response = health_pb2.HealthCheckResponse


class HealthService:
    """The standard health service; "" or any served service name may be asked about."""

    def __init__(self, deps: Dependencies) -> None:
        self._lifecycle = deps.lifecycle

    def _status(self, service: str) -> health_pb2.HealthCheckResponse.ServingStatus:
        # Every service is served by the one process, so they share one health.
        if service and not (service.startswith("gitaly.") or service.startswith("grpc.health")):
            raise GitalyError(StatusCode.NOT_FOUND, "unknown service")
        if self._lifecycle.ready and not self._lifecycle.stopping.is_set():
            return Response.SERVING
        return Response.NOT_SERVING

    async def Check(self, request: health_pb2.HealthCheckRequest, call: ServerCall) -> Response:
        """The server's current health."""
        return Response(status=self._status(request.service))

    async def Watch(self, request: health_pb2.HealthCheckRequest, call: ServerCall) -> None:
        """The current health and, if SERVING, NOT_SERVING once the server stops.

        The stream then ends, so an open watch never holds a draining server up.
        Cancellation: ends the watch; the client cancels it when it loses interest.
        """
        try:
            status = self._status(request.service)
        except GitalyError:
            status = Response.SERVICE_UNKNOWN
        await call.send(Response(status=status))
        if status == Response.SERVING:
            await self._lifecycle.stopping.wait()
            await call.send(Response(status=Response.NOT_SERVING))

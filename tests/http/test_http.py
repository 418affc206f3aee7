"""The HTTP listener: /metrics, /healthz and /readyz on a real socket."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import trio

from tests.helpers import Client
from trio_gitaly import __version__
from trio_gitaly.nursery_tree import RunningServer
from trio_gitaly.rpc.gen.gitaly import server_pb2
from trio_gitaly.rpc.gen.grpc.health.v1 import health_pb2


async def get(url: str) -> tuple[int, str]:
    def fetch() -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    return await trio.to_thread.run_sync(fetch)


async def test_health_and_readiness(server: RunningServer) -> None:
    base = f"http://{server.addresses['http'][0]}"
    assert await get(base + "/healthz") == (200, "ok\n")
    assert await get(base + "/readyz") == (200, "ready\n")
    assert (await get(base + "/nope"))[0] == 404


async def test_metrics_have_gitaly_names(server: RunningServer, client: Client) -> None:
    await client.unary(
        "/gitaly.ServerService/ServerInfo",
        server_pb2.ServerInfoRequest(),
        server_pb2.ServerInfoResponse,
    )
    status, body = await get(f"http://{server.addresses['http'][0]}/metrics")
    assert status == 200
    assert 'gitaly_connections_total{type="tcp"}' in body
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="ServerInfo",'
        'grpc_service="gitaly.ServerService",grpc_type="unary"} 1.0' in body
    )
    assert "grpc_server_handling_seconds_bucket" in body
    assert 'gitlab_build_info{git_version="' in body and f'version="{__version__}"' in body
    assert "process_resident_memory_bytes" in body


async def test_readiness_flips_to_503_while_stopping(server: RunningServer, client: Client) -> None:
    base = f"http://{server.addresses['http'][0]}"
    # Hold one call in flight (its first message never comes), so the drain lasts until
    # the grace deadline and the HTTP listener is still up to be asked.
    release = threading.Event()

    def never_sends() -> Iterator[health_pb2.HealthCheckRequest]:
        release.wait(10)
        return
        yield

    method = client.channel.stream_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    future = method.future(never_sends())
    try:
        await trio.sleep(0.2)
        server.stop()
        assert await get(base + "/readyz") == (503, "stopping\n")
        assert await get(base + "/healthz") == (200, "ok\n")
    finally:
        release.set()
        future.cancel()

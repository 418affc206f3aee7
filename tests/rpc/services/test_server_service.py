"""ServerService and Health on every listener kind, answers checked against the OS."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable

import grpc
import msgspec
import trio
import trustme

from tests.helpers import Client, git, make_config, storage_path
from trio_gitaly import __version__
from trio_gitaly.config import Config, ListenAddress, TlsConfig
from trio_gitaly.nursery_tree import RunningServer, serve
from trio_gitaly.rpc.gen.gitaly import server_pb2
from trio_gitaly.rpc.gen.grpc.health.v1 import health_pb2
from trio_gitaly.storage.metadata import METADATA_FILE

SERVER = "/gitaly.ServerService/"


async def test_server_info_on_every_listener_kind(
    nursery: trio.Nursery, short_dir: str, tmp_path: object, connect: Callable[..., Client]
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = os.path.join(short_dir, "cert.pem"), os.path.join(short_dir, "key.pem")
    cert.cert_chain_pems[0].write_to_path(cert_path)
    cert.private_key_pem.write_to_path(key_path)
    cfg = make_config(short_dir)
    cfg = msgspec.structs.replace(
        cfg,
        tls_listen_addr=ListenAddress.parse("127.0.0.1:0"),
        tls=TlsConfig(certificate_path=cert_path, key_path=key_path),
    )
    running: RunningServer = await nursery.start(serve, cfg)
    internal = os.path.join(running.runtime_dir, "sock.d", "intern")
    assert running.addresses["internal"] == [internal]
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    clients = {
        "unix": connect(f"unix:{cfg.socket_path}"),
        "internal": connect(f"unix:{internal}"),
        "tcp": connect(running.addresses["tcp"][0]),
        "tls": connect(
            running.addresses["tls"][0],
            credentials,
            **{"grpc.ssl_target_name_override": "localhost"},
        ),
    }
    git_version = git("version").split()[2]
    for kind, client in clients.items():
        response = await client.unary(
            SERVER + "ServerInfo", server_pb2.ServerInfoRequest(), server_pb2.ServerInfoResponse
        )
        assert response.server_version == __version__, kind
        assert response.git_version == git_version, kind
        assert [s.storage_name for s in response.storage_statuses] == ["default"], kind
    connections = running.metrics.registry.get_sample_value
    for transport in ("unix", "tcp", "tls"):
        assert (connections("gitaly_connections_total", {"type": transport}) or 0) >= 1


async def test_server_info_storage_status(client: Client, config: Config) -> None:
    response = await client.unary(
        SERVER + "ServerInfo", server_pb2.ServerInfoRequest(), server_pb2.ServerInfoResponse
    )
    status = response.storage_statuses[0]
    path = storage_path(config)
    with open(os.path.join(path, METADATA_FILE), encoding="utf-8") as metadata:
        filesystem_id = json.load(metadata)["gitaly_filesystem_id"]
    assert status.filesystem_id == filesystem_id
    assert status.readable and status.writeable
    assert status.fs_type not in ("", "unknown")


async def test_disk_statistics_match_statvfs(client: Client, config: Config) -> None:
    response = await client.unary(
        SERVER + "DiskStatistics",
        server_pb2.DiskStatisticsRequest(),
        server_pb2.DiskStatisticsResponse,
    )
    stats = os.statvfs(storage_path(config))
    (status,) = response.storage_statuses
    assert status.storage_name == "default"
    # Other processes write to the disk meanwhile: allow a little drift.
    assert abs(status.available - stats.f_bavail * stats.f_frsize) < 64 * 1024 * 1024
    assert abs(status.used - (stats.f_blocks - stats.f_bfree) * stats.f_frsize) < 64 * 1024 * 1024


async def test_readiness_check(client: Client, config: Config) -> None:
    response = await client.unary(
        SERVER + "ReadinessCheck",
        server_pb2.ReadinessCheckRequest(),
        server_pb2.ReadinessCheckResponse,
    )
    assert response.WhichOneof("Result") == "ok_response"
    # A storage that vanished (an unmounted volume) fails the check, by name.
    shutil.rmtree(storage_path(config))
    response = await client.unary(
        SERVER + "ReadinessCheck",
        server_pb2.ReadinessCheckRequest(),
        server_pb2.ReadinessCheckResponse,
    )
    assert response.WhichOneof("Result") == "failure_response"
    assert [c.name for c in response.failure_response.failed_checks] == ["storage default"]


async def test_health_follows_lifecycle(server: RunningServer, client: Client) -> None:
    check = "/grpc.health.v1.Health/Check"
    response = await client.unary(
        check, health_pb2.HealthCheckRequest(), health_pb2.HealthCheckResponse
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    error = await client.error(
        check, health_pb2.HealthCheckRequest(service="nope.Service"), health_pb2.HealthCheckResponse
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_server_signature_is_unimplemented(client: Client) -> None:
    error = await client.error(
        SERVER + "ServerSignature",
        server_pb2.ServerSignatureRequest(),
        server_pb2.ServerSignatureResponse,
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "method ServerSignature not implemented",
    )

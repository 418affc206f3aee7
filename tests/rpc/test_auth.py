"""v2 token authentication on a real server: accepted, rejected with Gitaly's codes."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import msgspec
import pytest
import trio

from tests.helpers import Client, make_config
from trio_gitaly.config import AuthConfig, Config
from trio_gitaly.nursery_tree import RunningServer, serve
from trio_gitaly.rpc.gen.gitaly import server_pb2
from trio_gitaly.rpc.gen.grpc.health.v1 import health_pb2
from trio_gitaly.rpc.middleware.auth import sign

TOKEN = "s3cr3t-token"
SERVER_INFO = "/gitaly.ServerService/ServerInfo"


def bearer(value: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {value}")]


async def start(
    nursery: trio.Nursery, short_dir: str, *, transitioning: bool = False
) -> RunningServer:
    cfg = make_config(short_dir)
    cfg = msgspec.structs.replace(cfg, auth=AuthConfig(token=TOKEN, transitioning=transitioning))
    running: RunningServer = await nursery.start(serve, cfg)
    return running


def auth_count(running: RunningServer, enforced: str, status: str) -> float:
    value = running.metrics.registry.get_sample_value(
        "gitaly_authentications_total", {"enforced": enforced, "status": status}
    )
    return value or 0.0


async def test_fresh_token_is_accepted(
    nursery: trio.Nursery, short_dir: str, connect: Callable[..., Client]
) -> None:
    running = await start(nursery, short_dir)
    client = connect(running.addresses["tcp"][0])
    response = await client.unary(
        SERVER_INFO,
        server_pb2.ServerInfoRequest(),
        server_pb2.ServerInfoResponse,
        metadata=bearer(sign(TOKEN, int(time.time()))),
    )
    assert response.server_version
    assert auth_count(running, "true", "ok") == 1


REJECTED = [
    (
        "missing",
        None,
        grpc.StatusCode.UNAUTHENTICATED,
        "authentication required",
        "unauthenticated",
    ),
    (
        "not bearer",
        "Basic dXNlcjpwYXNz",
        grpc.StatusCode.UNAUTHENTICATED,
        "authentication required",
        "unauthenticated",
    ),
    (
        "v1 style",
        "Bearer c2VjcmV0",
        grpc.StatusCode.UNAUTHENTICATED,
        "authentication required",
        "unauthenticated",
    ),
    (
        "non-hex signature",
        "Bearer v2.zz.123",
        grpc.StatusCode.UNAUTHENTICATED,
        "authentication required",
        "unauthenticated",
    ),
    (
        "other version",
        "Bearer v3.{sig}.{ts}",
        grpc.StatusCode.PERMISSION_DENIED,
        "permission denied: invalid token version",
        "denied",
    ),
    (
        "wrong secret",
        "Bearer {wrong}",
        grpc.StatusCode.PERMISSION_DENIED,
        "permission denied: wrong hmac signature",
        "denied",
    ),
    (
        "expired",
        "Bearer {expired}",
        grpc.StatusCode.PERMISSION_DENIED,
        "permission denied: token has expired",
        "denied",
    ),
    (
        "future",
        "Bearer {future}",
        grpc.StatusCode.PERMISSION_DENIED,
        "permission denied: token's validity window is in future",
        "denied",
    ),
]


@pytest.mark.parametrize(
    ("header", "code", "message", "label"),
    [case[1:] for case in REJECTED],
    ids=[case[0] for case in REJECTED],
)
async def test_bad_tokens_are_rejected(
    nursery: trio.Nursery,
    short_dir: str,
    connect: Callable[..., Client],
    header: str | None,
    code: grpc.StatusCode,
    message: str,
    label: str,
) -> None:
    running = await start(nursery, short_dir)
    client = connect(running.addresses["tcp"][0])
    now = int(time.time())
    metadata = []
    if header is not None:
        valid = sign(TOKEN, now)
        value = header.format(
            sig=valid.split(".")[1],
            ts=now,
            wrong=sign("another-token", now),
            expired=sign(TOKEN, now - 31 - 5),
            future=sign(TOKEN, now + 31 + 5),
        )
        metadata = [("authorization", value)]
    error = await client.error(
        SERVER_INFO,
        server_pb2.ServerInfoRequest(),
        server_pb2.ServerInfoResponse,
        metadata=metadata,
    )
    assert (error.code(), error.details()) == (code, message)
    assert auth_count(running, "true", label) == 1


async def test_transitioning_counts_but_allows(
    nursery: trio.Nursery, short_dir: str, connect: Callable[..., Client]
) -> None:
    running = await start(nursery, short_dir, transitioning=True)
    client = connect(running.addresses["tcp"][0])
    await client.unary(SERVER_INFO, server_pb2.ServerInfoRequest(), server_pb2.ServerInfoResponse)
    await client.unary(
        SERVER_INFO,
        server_pb2.ServerInfoRequest(),
        server_pb2.ServerInfoResponse,
        metadata=bearer(sign(TOKEN, int(time.time()))),
    )
    assert auth_count(running, "false", "unauthenticated") == 1
    assert auth_count(running, "false", "would be ok") == 1


async def test_health_never_needs_a_token(
    nursery: trio.Nursery, short_dir: str, connect: Callable[..., Client]
) -> None:
    running = await start(nursery, short_dir)
    client = connect(running.addresses["tcp"][0])
    response = await client.unary(
        "/grpc.health.v1.Health/Check",
        health_pb2.HealthCheckRequest(),
        health_pb2.HealthCheckResponse,
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_no_token_means_auth_off(
    server: RunningServer, client: Client, config: Config
) -> None:
    assert not config.auth.token
    await client.unary(SERVER_INFO, server_pb2.ServerInfoRequest(), server_pb2.ServerInfoResponse)
    assert auth_count(server, "true", "server disabled authentication") == 1

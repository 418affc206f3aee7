"""SSHService at the RPC level, through grpcio: validation, exit statuses, protocol v2,
client config options and the negotiation bounds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import trio

from tests.helpers import Client, repository, storage_path
from tests.repos import git, rich_repository
from trio_gitaly.config import Config
from trio_gitaly.goformat import go_quote
from trio_gitaly.nursery_tree import RunningServer
from trio_gitaly.rpc.gen.gitaly import ssh_pb2
from trio_gitaly.transport import commands, pktline

SSH = "/gitaly.SSHService/"
RESPONSES = {
    "SSHUploadPack": ssh_pb2.SSHUploadPackResponse,
    "SSHReceivePack": ssh_pb2.SSHReceivePackResponse,
    "SSHUploadArchive": ssh_pb2.SSHUploadArchiveResponse,
}
NEGOTIATION_TIMEOUT_S = 0.5


@pytest.fixture
def repo(config: Config) -> str:
    path = os.path.join(storage_path(config), "repo.git")
    rich_repository(path)
    return path


async def call(client: Client, rpc: str, *requests: Any) -> list[Any]:
    """A whole bidi call: `requests`, then half-close; all responses."""
    return await client.stream(SSH + rpc, list(requests), RESPONSES[rpc], client_streaming=True)


async def call_error(client: Client, rpc: str, *requests: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        await call(client, rpc, *requests)
    return info.value


async def failing_call(client: Client, rpc: str, *requests: Any) -> tuple[list[Any], grpc.RpcError]:
    """A bidi call that must fail: the responses that came before, and the error."""
    responses: list[Any] = []
    method = client.channel.stream_stream(
        SSH + rpc,
        request_serializer=type(requests[0]).SerializeToString,
        response_deserializer=RESPONSES[rpc].FromString,
    )

    def run() -> grpc.RpcError:
        try:
            responses.extend(method(iter(requests), timeout=30))
        except grpc.RpcError as error:
            return error
        raise AssertionError("the call did not fail")

    error = await trio.to_thread.run_sync(run)
    return responses, error


def stdout(responses: list[Any]) -> bytes:
    return b"".join(r.stdout for r in responses)


def exit_statuses(responses: list[Any]) -> list[int]:
    return [r.exit_status.value for r in responses if r.HasField("exit_status")]


MISSING = repository("missing.git")
GOOD = repository("repo.git")


@pytest.mark.parametrize(
    ("rpc", "first", "code", "message"),
    [
        ("SSHUploadPack", ssh_pb2.SSHUploadPackRequest(), "INVALID_ARGUMENT", "repository not set"),
        (
            "SSHUploadPack",
            ssh_pb2.SSHUploadPackRequest(repository=repository("")),
            "INVALID_ARGUMENT",
            "repository path not set",
        ),
        (
            "SSHUploadPack",
            ssh_pb2.SSHUploadPackRequest(repository=MISSING),
            "NOT_FOUND",
            "repository not found",
        ),
        (
            "SSHUploadPack",
            ssh_pb2.SSHUploadPackRequest(repository=GOOD, stdin=b"0000"),
            "INVALID_ARGUMENT",
            "non-empty stdin in first request",
        ),
        (
            "SSHUploadPack",
            ssh_pb2.SSHUploadPackRequest(repository=GOOD, git_config_options=["no-value"]),
            "INVALID_ARGUMENT",
            'cannot convert invalid config key: "no-value"',
        ),
        (
            "SSHReceivePack",
            ssh_pb2.SSHReceivePackRequest(repository=GOOD),
            "INVALID_ARGUMENT",
            "empty GlId",
        ),
        (
            "SSHReceivePack",
            ssh_pb2.SSHReceivePackRequest(gl_id="user-1"),
            "INVALID_ARGUMENT",
            "repository not set",
        ),
        (
            "SSHReceivePack",
            ssh_pb2.SSHReceivePackRequest(repository=MISSING, gl_id="user-1"),
            "NOT_FOUND",
            "repository not found",
        ),
        (
            "SSHReceivePack",
            ssh_pb2.SSHReceivePackRequest(repository=GOOD, gl_id="user-1", stdin=b"0000"),
            "INVALID_ARGUMENT",
            "non-empty data in first request",
        ),
        (
            "SSHReceivePack",
            ssh_pb2.SSHReceivePackRequest(
                repository=GOOD, gl_id="user-1", git_config_options=["a b=c"]
            ),
            "INVALID_ARGUMENT",
            "invalid config key 'a b'",
        ),
        (
            "SSHUploadArchive",
            ssh_pb2.SSHUploadArchiveRequest(),
            "INVALID_ARGUMENT",
            "repository not set",
        ),
        (
            "SSHUploadArchive",
            ssh_pb2.SSHUploadArchiveRequest(repository=MISSING),
            "NOT_FOUND",
            "repository not found",
        ),
        (
            "SSHUploadArchive",
            ssh_pb2.SSHUploadArchiveRequest(repository=GOOD, stdin=b"0000"),
            "INVALID_ARGUMENT",
            "non-empty stdin in first request",
        ),
    ],
)
async def test_first_request_is_validated(
    client: Client, repo: str, rpc: str, first: Any, code: str, message: str
) -> None:
    error = await call_error(client, rpc, first)
    assert (error.code().name, error.details()) == (code, message)


async def test_upload_pack_advertises_v0_or_v2(client: Client, repo: str) -> None:
    flush = ssh_pb2.SSHUploadPackRequest(stdin=pktline.flush())
    v0 = await call(client, "SSHUploadPack", ssh_pb2.SSHUploadPackRequest(repository=GOOD), flush)
    main = git(repo, "rev-parse", "main").decode().strip()
    assert stdout(v0)[4:].startswith(f"{main} HEAD\0".encode())
    assert exit_statuses(v0) == []

    first = ssh_pb2.SSHUploadPackRequest(repository=GOOD, git_protocol="version=2")
    v2 = await call(client, "SSHUploadPack", first, flush)
    assert stdout(v2).startswith(pktline.encode(b"version 2\n"))
    assert exit_statuses(v2) == []


async def test_upload_pack_honours_client_config(client: Client, repo: str) -> None:
    first = ssh_pb2.SSHUploadPackRequest(
        repository=GOOD, git_config_options=["uploadpack.hideRefs=refs/tags"]
    )
    flush = ssh_pb2.SSHUploadPackRequest(stdin=pktline.flush())
    advertised = stdout(await call(client, "SSHUploadPack", first, flush))
    assert b"refs/heads/main" in advertised
    assert b"refs/tags/" not in advertised


async def test_failing_upload_pack_sends_its_exit_status(client: Client, repo: str) -> None:
    responses, error = await failing_call(
        client,
        "SSHUploadPack",
        ssh_pb2.SSHUploadPackRequest(repository=GOOD),
        ssh_pb2.SSHUploadPackRequest(stdin=b"garbage!"),
    )
    assert exit_statuses(responses) == [128]
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == (
        "running upload-pack: cmd wait: exit status 128, stderr: "
        '"fatal: protocol error: bad line length character: garb\\n"'
    )


async def test_failing_receive_pack_sends_its_exit_status(client: Client, repo: str) -> None:
    before = git(repo, "for-each-ref")
    responses, error = await failing_call(
        client,
        "SSHReceivePack",
        ssh_pb2.SSHReceivePackRequest(repository=GOOD, gl_id="user-1"),
        ssh_pb2.SSHReceivePackRequest(stdin=b"garbage!"),
    )
    assert exit_statuses(responses) == [128]
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INTERNAL,
        "cmd wait: exit status 128",
    )
    assert git(repo, "for-each-ref") == before


async def test_receive_pack_client_hanging_up_is_cancelled(client: Client, repo: str) -> None:
    # A command line and no flush: receive-pack finds the client gone.
    main = git(repo, "rev-parse", "main").decode().strip()
    command = pktline.encode(f"{main} {'0' * 40} refs/heads/main\0report-status\n".encode())
    responses, error = await failing_call(
        client,
        "SSHReceivePack",
        ssh_pb2.SSHReceivePackRequest(repository=GOOD, gl_id="user-1"),
        ssh_pb2.SSHReceivePackRequest(stdin=command),
    )
    assert exit_statuses(responses) == [128]
    assert (error.code(), error.details()) == (grpc.StatusCode.CANCELLED, "user canceled the push")
    assert git(repo, "rev-parse", "main").decode().strip() == main


async def test_upload_archive_reports_every_exit_status(client: Client, repo: str) -> None:
    first = ssh_pb2.SSHUploadArchiveRequest(repository=GOOD)

    def args(*words: str) -> ssh_pb2.SSHUploadArchiveRequest:
        lines = b"".join(pktline.encode(f"argument {w}\n".encode()) for w in words)
        return ssh_pb2.SSHUploadArchiveRequest(stdin=lines + pktline.flush())

    ok = await call(client, "SSHUploadArchive", first, args("--format=tar", "main"))
    assert exit_statuses(ok) == [0]
    assert pktline.encode(b"ACK\n") in stdout(ok)

    responses, error = await failing_call(client, "SSHUploadArchive", first, args("no-such-ref"))
    assert exit_statuses(responses) == [128]
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "send: cmd wait: exit status 128, stderr: " + go_quote(
        b"".join(r.stderr for r in responses)
    )
    assert b"no such ref: no-such-ref" in stdout(responses)


async def held_open_call(client: Client, rpc: str, *requests: Any) -> grpc.RpcError:
    """Send `requests` and keep the request stream open; return the error that ends it."""
    done = threading.Event()

    def stream() -> Iterator[Any]:
        yield from requests
        done.wait()

    method = client.channel.stream_stream(
        SSH + rpc,
        request_serializer=type(requests[0]).SerializeToString,
        response_deserializer=RESPONSES[rpc].FromString,
    )

    def run() -> grpc.RpcError:
        try:
            for _ in method(stream(), timeout=30):
                pass
        except grpc.RpcError as error:
            return error
        raise AssertionError("the call did not fail")

    try:
        return await trio.to_thread.run_sync(run)
    finally:
        done.set()


async def test_upload_pack_negotiation_is_bounded(
    client: Client, repo: str, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "UPLOAD_PACK_NEGOTIATION_TIMEOUT_S", NEGOTIATION_TIMEOUT_S)
    main = git(repo, "rev-parse", "main").decode().strip()
    # A want and a flush, but never "done".
    wants = pktline.encode(f"want {main}\n".encode()) + pktline.flush()
    with trio.fail_after(10 * NEGOTIATION_TIMEOUT_S):
        error = await held_open_call(
            client,
            "SSHUploadPack",
            ssh_pb2.SSHUploadPackRequest(repository=GOOD),
            ssh_pb2.SSHUploadPackRequest(stdin=wants),
        )
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_upload_archive_request_is_bounded(
    client: Client, repo: str, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "UPLOAD_ARCHIVE_REQUEST_TIMEOUT_S", NEGOTIATION_TIMEOUT_S)
    # An argument, but never the flush that ends them.
    with trio.fail_after(10 * NEGOTIATION_TIMEOUT_S):
        error = await held_open_call(
            client,
            "SSHUploadArchive",
            ssh_pb2.SSHUploadArchiveRequest(repository=GOOD),
            ssh_pb2.SSHUploadArchiveRequest(stdin=pktline.encode(b"argument main\n")),
        )
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED

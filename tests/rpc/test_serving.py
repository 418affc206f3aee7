"""The serving loop over real sockets with a grpcio client.

A test servicer is bound to grpc.health.v1.Health's descriptor (unary Check, streaming
Watch), so each test controls what the handler does: raise, sleep, spawn git, stream.
"""

from __future__ import annotations

import functools
import os
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
import trio
from google.rpc import status_pb2
from hyperframe.frame import WindowUpdateFrame

from tests.helpers import Client
from trio_gitaly.config import AuthConfig, GrpcConfig
from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.command import CommandFactory
from trio_gitaly.git.version import detect
from trio_gitaly.lifecycle import Lifecycle
from trio_gitaly.metrics import Metrics
from trio_gitaly.rpc.call import MethodInfo, ServerCall
from trio_gitaly.rpc.gen.gitaly import errors_pb2
from trio_gitaly.rpc.gen.grpc.health.v1 import health_pb2
from trio_gitaly.rpc.listeners import bound_address, open_tcp
from trio_gitaly.rpc.middleware import chain
from trio_gitaly.rpc.registry import routes
from trio_gitaly.rpc.server import GrpcServer, serve_listener

CHECK = "/grpc.health.v1.Health/Check"
WATCH = "/grpc.health.v1.Health/Watch"
Request = health_pb2.HealthCheckRequest
Response = health_pb2.HealthCheckResponse
Behaviour = Callable[[Any, ServerCall], Awaitable[Any]]


class Servicer:
    """Runs whatever behaviour the test installed for each method."""

    def __init__(self) -> None:
        self.check: Behaviour | None = None
        self.watch: Behaviour | None = None

    async def Check(self, request: Any, call: ServerCall) -> Any:
        assert self.check is not None
        return await self.check(request, call)

    async def Watch(self, request: Any, call: ServerCall) -> Any:
        assert self.watch is not None
        return await self.watch(request, call)


class Harness:
    def __init__(
        self, servicer: Servicer, metrics: Metrics, lifecycle: Lifecycle, address: str
    ) -> None:
        self.servicer = servicer
        self.metrics = metrics
        self.lifecycle = lifecycle
        self.address = address

    def handled(self, code: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "grpc_server_handled_total",
            {
                "grpc_type": "unary",
                "grpc_service": "grpc.health.v1.Health",
                "grpc_method": "Check",
                "grpc_code": code,
            },
        )
        return value or 0.0


# A bidirectional method no .proto of ours has: it echoes every request it reads.
ECHO = "/test.Stream/Echo"


async def echo_all(first: Any, call: ServerCall) -> None:
    message = first
    while message is not None:
        await call.send(message)
        message = await call.receive()


ECHO_ROUTE = (
    MethodInfo(
        service="test.Stream",
        name="Echo",
        request_type=health_pb2.HealthCheckRequest,
        response_type=health_pb2.HealthCheckRequest,
        client_streaming=True,
        server_streaming=True,
    ),
    echo_all,
)


async def start_harness(nursery: trio.Nursery, **grpc_options: Any) -> Harness:
    servicer, metrics, lifecycle = Servicer(), Metrics(), Lifecycle()
    table = routes(health_pb2.DESCRIPTOR.services_by_name["Health"], servicer)
    server = GrpcServer(
        GrpcConfig(**grpc_options),
        {**table, ECHO: ECHO_ROUTE},
        chain(metrics=metrics, auth=AuthConfig()),
    )
    listeners = await open_tcp("127.0.0.1", 0)
    await nursery.start(
        functools.partial(serve_listener, server, listeners, transport="tcp", lifecycle=lifecycle)
    )
    return Harness(servicer, metrics, lifecycle, bound_address(listeners[0]))


@pytest.fixture
async def harness(nursery: trio.Nursery) -> Harness:
    return await start_harness(nursery)


@pytest.fixture
def rpc(harness: Harness, connect: Callable[..., Client]) -> Client:
    return connect(harness.address)


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.01)


async def test_unexpected_exception_is_internal_without_internal_text(
    harness: Harness, rpc: Client
) -> None:
    async def boom(request: Any, call: ServerCall) -> Any:
        raise ValueError("secret token abc123 in /srv/internal/path")

    harness.servicer.check = boom
    error = await rpc.error(CHECK, Request(), Response)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in error.details() and "ValueError" not in error.details()
    assert error.details().startswith("internal server error (correlation_id: ")
    assert harness.handled("Internal") == 1


async def test_domain_error_carries_code_message_and_detail(harness: Harness, rpc: Client) -> None:
    detail = errors_pb2.ReferenceNotFoundError(reference_name=b"refs/heads/x")

    async def not_found(request: Any, call: ServerCall) -> Any:
        raise GitalyError(StatusCode.NOT_FOUND, "reference not found", detail=detail)

    harness.servicer.check = not_found
    error = await rpc.error(CHECK, Request(), Response)
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "reference not found")
    trailers = dict(error.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == StatusCode.NOT_FOUND and status.message == "reference not found"
    assert status.details[0].type_url == "type.googleapis.com/gitaly.ReferenceNotFoundError"
    unpacked = errors_pb2.ReferenceNotFoundError()
    assert status.details[0].Unpack(unpacked) and unpacked == detail


async def test_message_text_is_percent_encoded_and_survives(harness: Harness, rpc: Client) -> None:
    async def fail(request: Any, call: ServerCall) -> Any:
        raise GitalyError(StatusCode.INVALID_ARGUMENT, 'bad path "ü/100%\nx"')

    harness.servicer.check = fail
    error = await rpc.error(CHECK, Request(), Response)
    assert error.details() == 'bad path "ü/100%\nx"'


async def test_grpc_timeout_cancels_handler_and_ends_deadline_exceeded(
    harness: Harness, rpc: Client
) -> None:
    cancelled = trio.Event()

    async def slow(request: Any, call: ServerCall) -> Any:
        try:
            await trio.sleep(30)
        finally:
            cancelled.set()

    harness.servicer.check = slow
    error = await rpc.error(CHECK, Request(), Response, timeout=0.3)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    with trio.fail_after(2):
        await cancelled.wait()
    # The server itself ended the call with DEADLINE_EXCEEDED (not only the client).
    await wait_until(lambda: harness.handled("DeadlineExceeded") == 1)


async def test_client_disconnect_cancels_handler_and_kills_git(
    harness: Harness, rpc: Client, tmp_path: Any
) -> None:
    repo = str(tmp_path / "repo.git")
    os.system(f"git init --bare --quiet {repo}")
    factory = CommandFactory(await detect())
    started = trio.Event()
    finished = trio.Event()
    pids: list[int] = []

    async def hold_git(request: Any, call: ServerCall) -> Any:
        try:
            # cat-file --batch waits on its stdin for as long as the RPC lives.
            async with factory.spawn(
                GitCommand("cat-file", flags=["--batch"]), repo_path=repo, stdin=subprocess.PIPE
            ) as process:
                pids.append(process.pid)
                started.set()
                await process.wait()
        finally:
            finished.set()

    harness.servicer.check = hold_git
    future = await trio.to_thread.run_sync(
        lambda: rpc.channel.unary_unary(
            CHECK,
            request_serializer=Request.SerializeToString,
            response_deserializer=Response.FromString,
        ).future(Request())
    )
    with trio.fail_after(5):
        await started.wait()
    os.kill(pids[0], 0)  # git is alive while the client waits
    rpc.channel.close()  # the client goes away
    gone_by = time.monotonic() + 1.0
    with trio.fail_after(1):
        await finished.wait()
    while True:
        try:
            os.kill(pids[0], 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < gone_by, "git outlived the cancelled RPC"
        await trio.sleep(0.01)
    assert future.cancelled() or future.exception() is not None


async def test_client_cancel_resets_only_that_stream(harness: Harness, rpc: Client) -> None:
    cancelled = trio.Event()

    async def wait_forever(request: Any, call: ServerCall) -> Any:
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async def ok(request: Any, call: ServerCall) -> Any:
        return Response(status=Response.SERVING)

    harness.servicer.watch = wait_forever
    harness.servicer.check = ok
    stream = rpc.channel.unary_stream(
        WATCH,
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )(Request())
    await trio.sleep(0.2)
    stream.cancel()  # RST_STREAM on the same connection
    with trio.fail_after(2):
        await cancelled.wait()
    # The connection still serves other calls.
    assert (await rpc.unary(CHECK, Request(), Response)).status == Response.SERVING


async def test_unknown_service_and_method_are_unimplemented(harness: Harness, rpc: Client) -> None:
    error = await rpc.error("/gitaly.NoSuchService/Method", Request(), Response)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "unknown service gitaly.NoSuchService",
    )
    error = await rpc.error("/grpc.health.v1.Health/List", Request(), Response)
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert error.details() == "unknown method List for service grpc.health.v1.Health"


async def test_oversized_request_is_resource_exhausted(
    nursery: trio.Nursery, connect: Callable[..., Client]
) -> None:
    harness = await start_harness(nursery, max_message_bytes=1024)

    async def ok(request: Any, call: ServerCall) -> Any:
        return Response()

    harness.servicer.check = ok
    rpc = connect(harness.address)
    error = await rpc.error(CHECK, Request(service="x" * 4096), Response)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The connection survives and serves a request within the limit.
    assert await rpc.unary(CHECK, Request(service="small"), Response) == Response()


async def test_large_stream_flows_with_backpressure(harness: Harness, rpc: Client) -> None:
    chunk = "x" * (256 * 1024)
    count = 200  # 50 MiB: far beyond every flow-control window involved

    async def big_stream(request: Any, call: ServerCall) -> None:
        # Request messages carry a string field: reuse one as a big response on the wire.
        message = health_pb2.HealthCheckRequest(service=chunk)
        for _ in range(count):
            await call.send(message)

    harness.servicer.watch = big_stream

    def consume() -> int:
        method = rpc.channel.unary_stream(
            WATCH,
            request_serializer=Request.SerializeToString,
            response_deserializer=health_pb2.HealthCheckRequest.FromString,
        )
        total = 0
        for message in method(Request(), timeout=60):
            total += len(message.service)
            time.sleep(0.0005)  # a slowish reader: the server must wait, not buffer
        return total

    assert await trio.to_thread.run_sync(consume) == count * len(chunk)


async def test_many_concurrent_calls_on_one_connection(harness: Harness, rpc: Client) -> None:
    async def echo(request: Any, call: ServerCall) -> Any:
        await trio.sleep(0.01)
        return Response(status=Response.SERVING if request.service else Response.NOT_SERVING)

    harness.servicer.check = echo
    results: list[int] = []
    lock = threading.Lock()

    async def one(i: int) -> None:
        response = await rpc.unary(CHECK, Request(service=str(i) if i % 2 else ""), Response)
        with lock:
            results.append(response.status)

    async with trio.open_nursery() as nursery:
        for i in range(64):
            nursery.start_soon(one, i)
    assert results.count(Response.SERVING) == 32 and results.count(Response.NOT_SERVING) == 32


async def test_drain_lets_in_flight_finish_and_refuses_new_connections(
    harness: Harness, rpc: Client, connect: Callable[..., Client]
) -> None:
    entered = trio.Event()

    async def slow_ok(request: Any, call: ServerCall) -> Any:
        entered.set()
        await trio.sleep(0.5)
        return Response(status=Response.SERVING)

    harness.servicer.check = slow_ok
    result: list[Any] = []

    async def call() -> None:
        result.append(await rpc.unary(CHECK, Request(), Response))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await entered.wait()
        harness.lifecycle.begin_stop(5.0)
    assert result[0].status == Response.SERVING
    late = connect(harness.address)
    error = await late.error(CHECK, Request(), Response, timeout=2)
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_grace_deadline_cancels_what_still_runs(harness: Harness, rpc: Client) -> None:
    entered = trio.Event()
    cancelled = trio.Event()

    async def stuck(request: Any, call: ServerCall) -> Any:
        entered.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    harness.servicer.check = stuck
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(rpc.error, CHECK, Request(), Response, timeout=10))
        await entered.wait()
        start = trio.current_time()
        harness.lifecycle.begin_stop(0.3)
        with trio.fail_after(3):
            await cancelled.wait()
        assert trio.current_time() - start >= 0.29


async def test_error_group_from_a_handler_nursery_keeps_the_domain_code(
    harness: Harness, rpc: Client
) -> None:
    async def fails_in_a_child(request: Any, call: ServerCall) -> Any:
        async def child() -> None:
            raise GitalyError(StatusCode.FAILED_PRECONDITION, "repository is already locked")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
            nursery.start_soon(trio.sleep_forever)

    harness.servicer.check = fails_in_a_child
    error = await rpc.error(CHECK, Request(), Response)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "repository is already locked",
    )


async def test_error_while_the_client_resets_stays_in_that_call(
    harness: Harness, rpc: Client
) -> None:
    cleaned_up = trio.Event()

    async def fails_on_cancel(request: Any, call: ServerCall) -> Any:
        async def cleanup_fails() -> None:
            try:
                await trio.sleep_forever()
            finally:
                cleaned_up.set()
                raise ValueError("cleanup failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cleanup_fails)
            nursery.start_soon(trio.sleep_forever)

    async def ok(request: Any, call: ServerCall) -> Any:
        return Response(status=Response.SERVING)

    harness.servicer.watch = fails_on_cancel
    harness.servicer.check = ok
    stream = rpc.channel.unary_stream(
        WATCH,
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )(Request())
    await trio.sleep(0.2)
    stream.cancel()
    with trio.fail_after(2):
        await cleaned_up.wait()
    # The server, its listener and this very connection are still serving.
    assert (await rpc.unary(CHECK, Request(), Response)).status == Response.SERVING


async def test_unary_request_with_two_messages_is_refused(harness: Harness, rpc: Client) -> None:
    async def ok(request: Any, call: ServerCall) -> Any:
        await trio.sleep(0.2)
        return Response(status=Response.SERVING)

    harness.servicer.check = ok
    send_two = rpc.channel.stream_unary(
        CHECK,
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )

    def call() -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            send_two(iter([Request(service="a"), Request(service="b")]), timeout=5)
        return info.value

    error = await trio.to_thread.run_sync(call)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "more than one request message" in error.details()


async def test_bidirectional_stream_delivers_each_message_once_in_order(
    harness: Harness, rpc: Client
) -> None:
    sent = [Request(service=f"message {i}" + "x" * (i * 997 % 70_000)) for i in range(300)]
    echo = rpc.channel.stream_stream(
        ECHO, request_serializer=Request.SerializeToString, response_deserializer=Request.FromString
    )

    def call() -> list[Request]:
        return list(echo(iter(sent), timeout=30))

    assert await trio.to_thread.run_sync(call) == sent


async def test_window_update_after_the_stream_ended_is_ignored(harness: Harness) -> None:
    # RFC 9113 §6.9: a WINDOW_UPDATE can arrive for a stream the server just finished
    # (the client granted window before it saw the end). h2 3.2 calls it a connection
    # error; every other call of that connection would fail with it.
    async def ok(request: Any, call: ServerCall) -> Any:
        return Response(status=Response.SERVING)

    harness.servicer.check = ok
    host, port = harness.address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()

    async def call(stream_id: int) -> list[Any]:
        headers = [
            (":method", "POST"), (":scheme", "http"), (":path", CHECK),
            (":authority", harness.address), ("te", "trailers"),
            ("content-type", "application/grpc"),
        ]  # fmt: skip
        client.send_headers(stream_id, headers)
        client.send_data(stream_id, b"\x00\x00\x00\x00\x00", end_stream=True)
        await stream.send_all(client.data_to_send())
        events: list[Any] = []
        with trio.fail_after(5):
            while not any(isinstance(e, h2.events.StreamEnded) for e in events):
                data = await stream.receive_some(65536)
                assert data, "the server closed the connection"
                events += client.receive_data(data)
        return events

    first = await call(1)
    assert any(isinstance(e, h2.events.TrailersReceived) for e in first)
    await call(3)  # opening a newer stream makes h2 forget the closed stream 1
    frame = WindowUpdateFrame(1)
    frame.window_increment = 65536
    await stream.send_all(frame.serialize())  # for stream 1, which has ended
    third = await call(5)
    trailers = next(e for e in third if isinstance(e, h2.events.TrailersReceived))
    assert (b"grpc-status", b"0") in trailers.headers
    await stream.aclose()

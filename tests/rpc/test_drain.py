"""Draining a connection frame by frame: GOAWAY, PING, GOAWAY, as gRPC servers do.

A raw HTTP/2 client (h2 for streams, hyperframe for the drain's frames) plays a client
that opens a stream just as the drain begins: that stream must be served, since the
client could not have known; only streams opened after the client acknowledged the
drain are refused (REFUSED_STREAM, which clients retry elsewhere).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
import trio
from hyperframe.frame import Frame, GoAwayFrame, PingFrame

from tests.rpc.test_serving import CHECK, Harness, Response, start_harness
from trio_gitaly.rpc import connection
from trio_gitaly.rpc.call import ServerCall

MAX_STREAM_ID = 2**31 - 1
WAIT_S = 5.0


class RawClient:
    """One HTTP/2 connection; the drain's GOAWAY and PING frames are kept from h2."""

    def __init__(self, stream: trio.SocketStream, authority: str) -> None:
        self._stream = stream
        self._authority = authority
        self._h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self._h2.initiate_connection()
        self._buffer = b""
        self.goaways: list[int] = []  # last_stream_id of each GOAWAY
        self.pings: list[bytes] = []
        self.statuses: dict[int, bytes] = {}  # stream id -> grpc-status
        self.reset: dict[int, int] = {}  # stream id -> error code
        self.closed = False

    async def request(self, stream_id: int) -> None:
        headers = [
            (":method", "POST"), (":scheme", "http"), (":path", CHECK),
            (":authority", self._authority), ("te", "trailers"),
            ("content-type", "application/grpc"),
        ]  # fmt: skip
        self._h2.send_headers(stream_id, headers)
        self._h2.send_data(stream_id, b"\x00\x00\x00\x00\x00", end_stream=True)
        await self._flush()

    async def ack(self, opaque_data: bytes) -> None:
        frame = PingFrame(0)
        frame.flags.add("ACK")
        frame.opaque_data = opaque_data
        await self._stream.send_all(frame.serialize())

    async def until(self, done: Any) -> None:
        """Read and handle frames until `done()` holds."""
        with trio.fail_after(WAIT_S):
            while not done():
                data = await self._stream.receive_some(65536)
                if not data:
                    self.closed = True
                    return
                self._buffer += data
                for frame in self._frames():
                    self._handle(frame)
                await self._flush()

    def _frames(self) -> list[Frame]:
        frames = []
        while len(self._buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
            if len(self._buffer) < 9 + length:
                break
            frame.parse_body(memoryview(self._buffer[9 : 9 + length]))
            self._buffer = self._buffer[9 + length :]
            frames.append(frame)
        return frames

    def _handle(self, frame: Frame) -> None:
        if isinstance(frame, GoAwayFrame):
            self.goaways.append(frame.last_stream_id)
            return
        if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
            self.pings.append(frame.opaque_data)
            return
        for event in self._h2.receive_data(frame.serialize()):
            if isinstance(event, h2.events.TrailersReceived):
                self.statuses[event.stream_id] = dict(event.headers)[b"grpc-status"]
            elif isinstance(event, h2.events.StreamReset):
                self.reset[event.stream_id] = event.error_code

    async def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            await self._stream.send_all(data)


@pytest.fixture
async def harness(nursery: trio.Nursery) -> Harness:
    return await start_harness(nursery)


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[RawClient]:
    host, port = harness.address.rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        yield RawClient(stream, harness.address)


def _hold(harness: Harness) -> tuple[trio.Event, list[int]]:
    """Make Check wait for the returned event; the list counts entered calls."""
    release, entered = trio.Event(), []

    async def held(request: Any, call: ServerCall) -> Any:
        entered.append(1)
        await release.wait()
        return Response(status=Response.SERVING)

    harness.servicer.check = held
    return release, entered


async def _entered(entered: list[int], count: int) -> None:
    # Server-side state: polled, since the client may have nothing more to read.
    with trio.fail_after(WAIT_S):
        while len(entered) < count:
            await trio.sleep(0.01)


async def test_a_stream_opened_before_the_ack_is_served(
    harness: Harness, client: RawClient
) -> None:
    release, entered = _hold(harness)
    await client.request(1)
    await _entered(entered, 1)
    harness.lifecycle.begin_stop(WAIT_S)
    await client.until(lambda: client.goaways and client.pings)
    # The first GOAWAY refuses nothing: the client may have streams on the wire.
    assert client.goaways == [MAX_STREAM_ID]
    await client.request(3)  # sent before the client processed the GOAWAY
    await client.ack(client.pings[0])
    await client.until(lambda: len(client.goaways) == 2)
    assert client.goaways[1] == 3, "the second GOAWAY names the last stream received"
    await _entered(entered, 2)
    release.set()
    await client.until(lambda: len(client.statuses) == 2)
    assert client.statuses == {1: b"0", 3: b"0"}
    assert client.reset == {}


async def test_without_an_ack_the_drain_goes_on(
    harness: Harness, client: RawClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "DRAIN_ACK_TIMEOUT_S", 0.2)
    release, entered = _hold(harness)
    await client.request(1)
    await _entered(entered, 1)
    harness.lifecycle.begin_stop(WAIT_S)
    await client.until(lambda: len(client.goaways) == 2)
    assert client.goaways == [MAX_STREAM_ID, 1]
    # Newer than the last stream named: refused, never run, safe to retry.
    await client.request(3)
    await client.until(lambda: 3 in client.reset)
    assert client.reset[3] == h2.errors.ErrorCodes.REFUSED_STREAM
    release.set()
    await client.until(lambda: 1 in client.statuses)
    assert client.statuses == {1: b"0"}
    assert len(entered) == 1


async def test_a_drained_connection_waits_for_the_client_to_close(
    harness: Harness, client: RawClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closing first could reset the connection with a request of the client's unread.
    monkeypatch.setattr(connection, "CLOSE_LINGER_S", 0.5)
    release, _ = _hold(harness)
    release.set()
    await client.request(1)
    await client.until(lambda: 1 in client.statuses)  # served: accepted for sure
    harness.lifecycle.begin_stop(WAIT_S)
    await client.until(lambda: client.pings)
    await client.ack(client.pings[0])
    await client.until(lambda: len(client.goaways) == 2)
    start = trio.current_time()
    await client.until(lambda: client.closed)
    assert trio.current_time() - start >= 0.4

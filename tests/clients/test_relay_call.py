"""The ssh helper's call loop against a scripted HTTP/2 server on a real socket pair.

The end-to-end behaviour (clone, push, kills, TLS, tokens, drains) is tested through git
in the other tests of this package; these cover how the loop ends on what a real server
rarely does: a GOAWAY that spares the call or refuses it, a reset, a dropped connection,
git gone, and git no longer reading.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import h2.config
import h2.connection
import h2.events
import pytest
from hyperframe.frame import GoAwayFrame

from trio_gitaly.clients.relay_call import CallStatus, PeerGone, Relay, call

METHOD = "/test.Relay/Call"
SPARING_GOAWAY = 2**31 - 1


def framed(payload: bytes) -> bytes:
    """One gRPC message: uncompressed flag, big-endian length, payload."""
    return b"\0" + struct.pack(">I", len(payload)) + payload


class Server:
    """The server side of a socket pair, driven by h2 in a thread of its own."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        self.h2.initiate_connection()
        self.flush()
        self.received: list[h2.events.Event] = []
        self._looked_at = 0  # events of `received` that `until` has gone past

    def flush(self) -> None:
        self.sock.sendall(self.h2.data_to_send())

    def until(self, kind: type[h2.events.Event]) -> h2.events.Event:
        """The next event of `kind`, reading as needed; everything seen is kept."""
        while True:
            while self._looked_at < len(self.received):
                event = self.received[self._looked_at]
                self._looked_at += 1
                if isinstance(event, kind):
                    return event
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"client closed before {kind.__name__}")
            self.received += self.h2.receive_data(data)
            self.flush()

    def respond(self, stream_id: int, *messages: bytes) -> None:
        self.h2.send_headers(stream_id, [(":status", "200"), ("content-type", "application/grpc")])
        for message in messages:
            self.h2.send_data(stream_id, framed(message))
        self.flush()

    def finish(self, stream_id: int, code: int = 0, message: str = "") -> None:
        trailers = [("grpc-status", str(code))]
        if message:
            trailers.append(("grpc-message", message))
        self.h2.send_headers(stream_id, trailers, end_stream=True)
        self.flush()

    def goaway(self, last_stream_id: int) -> None:
        # Written raw: h2's own close_connection would stop this side from serving on.
        self.sock.sendall(GoAwayFrame(0, last_stream_id=last_stream_id).serialize())


def run_call(
    script: Callable[[Server], None],
    *,
    input_data: bytes = b"",
    on_message: Callable[[bytes], None] | None = None,
    peer_gone: Callable[[], bool] = lambda: False,
    watch_fd: int | None = None,
) -> tuple[CallStatus | BaseException, list[bytes], Server]:
    """Run one call against `script`; the status (or what it raised), the answers seen."""
    client_sock, server_sock = socket.socketpair()
    server = Server(server_sock)
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            script(server)
        except BaseException as exc:  # surfaced by the test below
            failures.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    read_end, write_end = os.pipe()
    os.write(write_end, input_data)
    os.close(write_end)
    answers: list[bytes] = []
    relay = Relay(
        input_fd=read_end,
        wrap_input=lambda chunk: b"in:" + chunk,
        on_message=on_message or answers.append,
        input_chunk_bytes=4,
        watch_fd=watch_fd,
        peer_gone=peer_gone,
        watch_interval_s=0.01,
    )
    outcome: CallStatus | BaseException
    try:
        outcome = call(client_sock, METHOD, first=b"first", relay=relay)
    except (PeerGone, BrokenPipeError) as exc:
        outcome = exc
    finally:
        os.close(read_end)
    thread.join(timeout=5)
    client_sock.close()
    server_sock.close()
    assert not failures, failures
    return outcome, answers, server


def test_requests_stream_in_and_answers_come_back() -> None:
    def script(server: Server) -> None:
        request = server.until(h2.events.RequestReceived)
        server.until(h2.events.StreamEnded)
        server.respond(request.stream_id, b"one", b"two")
        server.finish(request.stream_id)

    status, answers, server = run_call(script, input_data=b"abcdefghij")
    assert status == CallStatus(0, "")
    assert answers == [b"one", b"two"]
    request = next(e for e in server.received if isinstance(e, h2.events.RequestReceived))
    assert (":path", METHOD) in [(k.decode(), v.decode()) for k, v in request.headers]
    body = b"".join(e.data for e in server.received if isinstance(e, h2.events.DataReceived))
    # The first request, then the input in chunks of at most 4 bytes.
    expected = [b"first", b"in:abcd", b"in:efgh", b"in:ij"]
    assert body == b"".join(framed(m) for m in expected)


def test_a_goaway_that_spares_the_call_lets_it_finish() -> None:
    def script(server: Server) -> None:
        request = server.until(h2.events.RequestReceived)
        server.respond(request.stream_id, b"before")
        server.goaway(SPARING_GOAWAY)  # a drain announces itself so
        server.goaway(request.stream_id)  # then names the last call it serves
        server.h2.send_data(request.stream_id, framed(b"after"))
        server.finish(request.stream_id)

    status, answers, _ = run_call(script)
    assert status == CallStatus(0, "")
    assert answers == [b"before", b"after"]


def test_a_goaway_that_refuses_the_call_ends_it_unavailable() -> None:
    def script(server: Server) -> None:
        server.until(h2.events.RequestReceived)
        server.goaway(0)

    status, _, _ = run_call(script)
    assert status == CallStatus(14, "the server is going away")
    assert isinstance(status, CallStatus)
    assert status.code_name == "UNAVAILABLE"


def test_a_failed_call_reports_its_code_and_message() -> None:
    def script(server: Server) -> None:
        request = server.until(h2.events.RequestReceived)
        server.respond(request.stream_id)
        server.finish(request.stream_id, 5, "repository%20not%20found")

    status, _, _ = run_call(script)
    assert status == CallStatus(5, "repository not found")
    assert isinstance(status, CallStatus)
    assert status.code_name == "NOT_FOUND"


def test_a_reset_or_a_closed_connection_ends_the_call_unavailable() -> None:
    def reset(server: Server) -> None:
        request = server.until(h2.events.RequestReceived)
        server.h2.reset_stream(request.stream_id)
        server.flush()

    status, _, _ = run_call(reset)
    assert isinstance(status, CallStatus)
    assert status.code == 14
    assert status.message.startswith("stream reset by the server")

    def hang_up(server: Server) -> None:
        server.until(h2.events.RequestReceived)
        server.sock.shutdown(socket.SHUT_RDWR)

    status, _, _ = run_call(hang_up)
    assert isinstance(status, CallStatus)
    assert status.code == 14
    # Which the client meets first, the end of the stream or a failed write, is a race.
    assert status.message == "the server closed the connection" or status.message.startswith(
        "connection to the server failed: "
    )


@pytest.fixture
def hung_up_pipe() -> Iterator[int]:
    """The write end of a pipe whose reader is gone: poll reports POLLERR on it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    yield write_end
    os.close(write_end)


def test_git_gone_cancels_the_stream(hung_up_pipe: int) -> None:
    def script(server: Server) -> None:
        request = server.until(h2.events.RequestReceived)
        server.respond(request.stream_id)
        reset = server.until(h2.events.StreamReset)
        assert reset.stream_id == request.stream_id

    checks: list[bool] = []

    def peer_gone() -> bool:
        checks.append(True)
        return len(checks) >= 3

    outcome, _, _ = run_call(script, watch_fd=hung_up_pipe, peer_gone=peer_gone)
    assert isinstance(outcome, PeerGone)
    assert len(checks) == 3  # asked only once the watched pipe hung up, until it said so


def test_git_not_reading_cancels_the_stream_and_propagates() -> None:
    def script(server: Server) -> None:
        request = server.until(h2.events.RequestReceived)
        server.respond(request.stream_id, b"output")
        server.until(h2.events.StreamReset)

    def on_message(data: bytes) -> None:
        raise BrokenPipeError(32, "git stopped reading")

    outcome, _, _ = run_call(script, on_message=on_message)
    assert isinstance(outcome, BrokenPipeError)

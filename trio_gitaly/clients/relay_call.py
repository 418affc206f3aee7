"""One bidirectional-streaming gRPC call relayed between file descriptors, in one thread.

`trio-gitaly ssh` turns git's output into request messages and the server's answers
into git's input; the hook entry point does the same with a hook's stdin and output.
grpcio did this with a request thread and its own pollers, handing every HTTP/2 frame
between threads: per 110 MB clone, ~28,000 futex calls and 0.4 s of the helper's CPU,
competing with the two git processes for the machine's cores; and its import (with
asyncio) was most of a short call's start-up. Here the call runs on purerpc's sans-IO
connection, the gRPC framing our server uses, over a blocking socket, with one poll(2)
loop over the socket, the input and (for hang-ups) the output. In the clone benchmark
the helper went from 1.06-1.07x to 1.04x of a direct clone.

h2 3.2 closes the whole connection on any GOAWAY, while our server (like Gitaly) drains
with a GOAWAY that refuses nothing and then lets calls in flight finish: a GOAWAY that
spares our stream is noted and the call goes on.
"""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from purerpc.grpclib.buffers import MessageWriteBuffer
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.connection import GRPCConnection
from purerpc.grpclib.events import MessageReceived, ResponseEnded

#: The largest message either side may send (the server's default bound).
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
#: What one socket read takes at most: one frame of the server's largest relay messages
#: (256 KiB of git's output) with its headers. h2 copies what is left in its buffer after
#: each frame, so reading several frames at once costs more CPU, not less.
RECV_BYTES: Final = 256 * 1024 + 64
#: gRPC status codes by number (grpc's own names, as the helper prints them).
CODE_NAMES: Final = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)  # fmt: skip
_UNAVAILABLE: Final = 14
_GONE: Final = select.POLLERR | select.POLLHUP | select.POLLNVAL


@dataclass(frozen=True)
class CallStatus:
    """How the call ended: a gRPC status code (0 for OK) and its message."""

    code: int
    message: str

    @property
    def code_name(self) -> str:
        """The code's name ("NOT_FOUND"); the number when it is not a known code."""
        return CODE_NAMES[self.code] if 0 <= self.code < len(CODE_NAMES) else str(self.code)


class PeerGone(Exception):
    """The local peer (git) went away mid-call; the call was cancelled."""


@dataclass(frozen=True)
class Relay:
    """What the call reads, and what it does with each answer.

    Attributes:
        input_fd: read to EOF; each chunk becomes one request (`wrap_input`). None for
            a call whose only request is the first (the call is half-closed at once).
        on_message: called with each serialized response message, in order; whatever
            it raises cancels the call and propagates.
        watch_fd: a descriptor whose hang-up (POLLERR/POLLHUP) means the peer may be
            gone; from then on `peer_gone` is asked every `watch_interval_s`.
    """

    input_fd: int | None
    on_message: Callable[[bytes], None]
    wrap_input: Callable[[bytes], bytes] = bytes
    input_chunk_bytes: int = 64 * 1024
    watch_fd: int | None = None
    peer_gone: Callable[[], bool] = lambda: False
    watch_interval_s: float = 0.05


def call(
    sock: socket.socket,
    method: str,
    *,
    first: bytes,
    relay: Relay,
    metadata: Sequence[tuple[str, str]] = (),
    authority: str = "localhost",
    scheme: str = "http",
) -> CallStatus:
    """Run the bidi call `method` ("/pkg.Service/Method") on `sock` and return its status.

    `first` (a serialized request) is sent first, then one request per chunk of
    `relay.input_fd`; its EOF half-closes the call. Responses go to `relay.on_message`.
    Reading stops while the server's window is full, so nothing buffers unboundedly.

    A socket that fails or closes ends the call UNAVAILABLE, as gRPC clients report it.

    Raises:
        PeerGone: `relay.peer_gone` said so; the stream was reset (CANCEL).
        Exception: whatever `relay.on_message` raised (a BrokenPipeError when git
            stopped reading); the stream was reset first.
    """
    connection = _Connection()
    connection.initiate_connection()
    stream_id = connection.get_next_available_stream_id()
    service, _, name = method.lstrip("/").partition("/")
    connection.start_request(
        stream_id, scheme, service, name, authority=authority, custom_metadata=tuple(metadata)
    )
    pending = MessageWriteBuffer(max_message_length=MAX_MESSAGE_BYTES)
    pending.write_message(first)
    loop = _Loop(sock, connection, stream_id, pending, relay)
    try:
        return loop.run()
    except BaseException:
        loop.cancel()
        raise


class _Loop:
    def __init__(
        self,
        sock: socket.socket,
        connection: _Connection,
        stream_id: int,
        pending: MessageWriteBuffer,
        relay: Relay,
    ) -> None:
        self._sock = sock
        self._connection = connection
        self._stream_id = stream_id
        self._pending = pending
        self._relay = relay
        self._poller = select.poll()
        self._poller.register(sock.fileno(), select.POLLIN)
        self._input_open = relay.input_fd is not None
        self._input_polled = False
        self._half_closed = False
        self._watching = False
        if relay.watch_fd is not None:
            self._poller.register(relay.watch_fd, 0)  # errors and hang-ups only

    def run(self) -> CallStatus:
        try:
            return self._run()
        except _SocketError as exc:
            return CallStatus(_UNAVAILABLE, f"connection to the server failed: {exc.__cause__}")

    def _run(self) -> CallStatus:
        self._flush()
        while True:
            timeout_ms = self._relay.watch_interval_s * 1000 if self._watching else None
            for fd, events in self._poller.poll(timeout_ms):
                if fd == self._sock.fileno():
                    status = self._receive()
                    if status is not None:
                        return status
                elif fd == self._relay.input_fd:
                    self._read_input()
                elif events & _GONE:
                    self._poller.unregister(fd)
                    self._watching = True
            if self._watching and self._relay.peer_gone():
                raise PeerGone
            self._flush()

    def cancel(self) -> None:
        """Reset our stream, best effort: the server then ends its side at once."""
        try:
            self._connection.reset_stream(self._stream_id, h2.errors.ErrorCodes.CANCEL)
            self._sock.sendall(self._connection.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            return  # the stream or the socket is already gone: nothing left to cancel

    def _receive(self) -> CallStatus | None:
        try:
            data = self._sock.recv(RECV_BYTES)
        except OSError as exc:
            raise _SocketError from exc
        if not data:
            return CallStatus(_UNAVAILABLE, "the server closed the connection")
        for event in self._connection.receive_data(data):
            if isinstance(event, MessageReceived):
                self._relay.on_message(event.data)
                self._connection.acknowledge_received_data(
                    self._stream_id, event.flow_controlled_length
                )
            elif isinstance(event, ResponseEnded):
                status = event.status
                return CallStatus(status.int_value, status.status_message)
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == self._stream_id:
                return CallStatus(_UNAVAILABLE, f"stream reset by the server ({event.error_code})")
            elif (
                isinstance(event, h2.events.ConnectionTerminated)
                and (event.last_stream_id or 0) < self._stream_id
            ):
                return CallStatus(_UNAVAILABLE, "the server is going away")
        return None

    def _read_input(self) -> None:
        assert self._relay.input_fd is not None
        chunk = os.read(self._relay.input_fd, self._relay.input_chunk_bytes)
        if chunk:
            self._pending.write_message(self._relay.wrap_input(chunk))
        else:
            self._input_open = False

    def _flush(self) -> None:
        connection, stream_id = self._connection, self._stream_id
        while (size := len(self._pending)) and (
            window := connection.flow_control_window(stream_id)
        ) > 0:
            connection.send_data(stream_id, self._pending.data_to_send(min(size, window)))
        if not self._input_open and not len(self._pending) and not self._half_closed:
            connection.end_request(stream_id)
            self._half_closed = True
        data = connection.data_to_send()
        if data:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                raise _SocketError from exc
        # Read git's output only when the last of it has left: the server's window
        # bounds what we hold.
        want_input = self._input_open and not len(self._pending)
        if want_input != self._input_polled:
            assert self._relay.input_fd is not None
            if want_input:
                self._poller.register(self._relay.input_fd, select.POLLIN)
            else:
                self._poller.unregister(self._relay.input_fd)
            self._input_polled = want_input


class _SocketError(Exception):
    """The socket failed (its OSError is the cause): kept apart from git's pipes' errors."""


class _DrainTolerantH2(h2.connection.H2Connection):  # type: ignore[misc]
    """h2's connection, with a GOAWAY reported without closing the connection."""

    def _receive_goaway_frame(self, frame: Any) -> tuple[list[Any], list[Any]]:
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors._error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class _Connection(GRPCConnection):  # type: ignore[misc]
    """purerpc's client connection, passing on resets and GOAWAYs it would drop."""

    h2_connection: h2.connection.H2Connection

    def __init__(self) -> None:
        super().__init__(GRPCConfiguration(client_side=True, max_message_length=MAX_MESSAGE_BYTES))
        config: h2.config.H2Configuration = self.h2_connection.config
        self.h2_connection = _DrainTolerantH2(config)
        self.h2_connection.clear_outbound_data_buffer()
        self._set_h2_connection_local_settings()

    def _stream_reset(self, event: h2.events.StreamReset) -> list[Any]:
        return [event]

    def _connection_terminated(self, event: h2.events.ConnectionTerminated) -> list[Any]:
        return [event]

"""purerpc's sans-IO gRPC connection, with the gaps that matter to a server closed.

purerpc 0.8's `GRPCConnection` parses gRPC requests and frames messages over h2, which is
what we reuse. As shipped it drops RST_STREAM and GOAWAY, lets one malformed request or
oversized message raise out of `receive_data` (killing every stream of the connection),
hard-codes its limits, and cannot send `grpc-status-details-bin`. This subclass turns
those cases into events for our serving loop and takes its limits from config.
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame, WindowUpdateFrame
from purerpc.grpclib.buffers import MessageReadBuffer
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.connection import GRPCConnection
from purerpc.grpclib.events import MessageReceived, RequestReceived
from purerpc.grpclib.exceptions import MessageTooLargeError, ProtocolError
from purerpc.grpclib.headers import HeaderDict

# h2 advertises this as our receive frame size limit: the largest HTTP/2 allows.
MAX_INBOUND_FRAME_BYTES = 2**24 - 1
# Gitaly's metadata is small (a token, a correlation id, feature flags); 64 KiB leaves
# room for many feature flags while bounding what one request can make us buffer.
MAX_HEADER_LIST_BYTES = 64 * 1024
# Request bytes a connection may have received but its handlers not yet consumed, over
# all its streams (each stream is bounded by one message). purerpc grants 1 GiB here.
CONNECTION_WINDOW_BYTES = 64 * 1024 * 1024
# What HTTP/2 grants a connection before any WINDOW_UPDATE.
_DEFAULT_CONNECTION_WINDOW_BYTES = 65535
# The opaque data of the PING that follows a draining connection's first GOAWAY.
_DRAIN_PING = b"drain\x00\x00\x00"
# The largest stream id: a GOAWAY naming it announces the drain without refusing anything.
_MAX_STREAM_ID = 2**31 - 1


@dataclass(frozen=True)
class BadRequest:
    """A stream whose request headers cannot be served; answered with `code`."""

    stream_id: int
    code: int
    message: str


@dataclass(frozen=True)
class MessageTooLarge:
    """A request message over `max_message_bytes`: the stream gets RESOURCE_EXHAUSTED."""

    stream_id: int
    message: str


@dataclass(frozen=True)
class StreamReset:
    """The client reset the stream (cancel, deadline, or gone): stop its RPC."""

    stream_id: int


@dataclass(frozen=True)
class DrainAcknowledged:
    """The client answered the drain's PING: it has seen the first GOAWAY."""


@dataclass(frozen=True)
class ClientGoAway:
    """The client will open no more streams on this connection."""

    error_code: int


class ServerConnection(GRPCConnection):  # type: ignore[misc]
    """Server-side gRPC-over-h2 state for one connection (no I/O)."""

    def __init__(self, *, max_message_bytes: int, max_concurrent_streams: int) -> None:
        self._max_concurrent_streams = max_concurrent_streams
        # A stream's window must hold one whole message plus its 5-byte prefix: we grant
        # window back only when the handler consumes a message (that is the backpressure).
        self._stream_window = min(max_message_bytes + 5, 2**31 - 1)
        super().__init__(GRPCConfiguration(client_side=False, max_message_length=max_message_bytes))
        connection = self.h2_connection
        receive_window_update = connection._receive_window_update_frame

        def window_update(frame: WindowUpdateFrame) -> tuple[list[Any], list[Any]]:
            # RFC 9113 §6.9: a WINDOW_UPDATE may arrive for a stream we just ended (the
            # client granted window before it saw the end) and must be ignored. h2 3.2
            # raises once it has forgotten the stream, which would cost the client every
            # other call on this connection. h2 reads its handlers from this table.
            try:
                return receive_window_update(frame)  # type: ignore[no-any-return]
            except h2.exceptions.StreamClosedError:
                return [], []

        connection._frame_dispatch_table[WindowUpdateFrame] = window_update

    def _set_h2_connection_local_settings(self) -> None:
        codes = h2.settings.SettingCodes
        self.h2_connection.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                codes.MAX_CONCURRENT_STREAMS: self._max_concurrent_streams,
                codes.INITIAL_WINDOW_SIZE: self._stream_window,
                codes.MAX_FRAME_SIZE: MAX_INBOUND_FRAME_BYTES,
                codes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_BYTES,
            },
        )
        self.h2_connection.max_inbound_frame_size = MAX_INBOUND_FRAME_BYTES

    def initiate_connection(self) -> None:
        self.h2_connection.initiate_connection()
        self.h2_connection.increment_flow_control_window(
            CONNECTION_WINDOW_BYTES - _DEFAULT_CONNECTION_WINDOW_BYTES
        )

    # -- events purerpc raises or drops --------------------------------------------------

    def _request_received(self, event: h2.events.RequestReceived) -> list[Any]:
        try:
            headers = HeaderDict(event.headers)
            request = RequestReceived.parse_from_stream_id_and_headers_destructive(
                event.stream_id, headers
            )
        except (ProtocolError, KeyError, ValueError) as exc:
            # 12 = UNIMPLEMENTED is what gRPC servers answer to requests they cannot route.
            return [BadRequest(event.stream_id, 12, f"malformed grpc request: {exc}")]
        if event.stream_ended:
            return [BadRequest(event.stream_id, 13, "request ended before its message")]
        if request.message_encoding not in (None, "identity"):
            return [
                BadRequest(
                    event.stream_id,
                    12,
                    f"grpc: decompressor is not installed for grpc-encoding "
                    f"{request.message_encoding!r}",
                )
            ]
        self.message_read_buffers[event.stream_id] = MessageReadBuffer(
            None, self.config.max_message_length
        )
        return [request]

    def _data_received(self, event: h2.events.DataReceived) -> list[Any]:
        buffer = self.message_read_buffers.get(event.stream_id)
        if buffer is None:
            # The stream was answered or refused already; still return the bytes to the
            # connection window, or the client's other streams would stall.
            self._acknowledge(event.stream_id, event.flow_controlled_length)
            return []
        try:
            buffer.data_received(event.data, event.flow_controlled_length)
        except MessageTooLargeError as exc:
            del self.message_read_buffers[event.stream_id]
            self._acknowledge(event.stream_id, event.flow_controlled_length)
            return [MessageTooLarge(event.stream_id, f"grpc: {exc}")]
        return [
            MessageReceived(event.stream_id, message, length)
            for message, length in buffer.read_all_complete_messages_flowcontrol()
        ]

    def _stream_reset(self, event: h2.events.StreamReset) -> list[Any]:
        self.message_read_buffers.pop(event.stream_id, None)
        return [StreamReset(event.stream_id)]

    def _connection_terminated(self, event: h2.events.ConnectionTerminated) -> list[Any]:
        return [ClientGoAway(event.error_code)]

    def _ping_acknowledged(self, event: h2.events.PingAcknowledged) -> list[Any]:
        return [DrainAcknowledged()] if event.ping_data == _DRAIN_PING else []

    # -- sending ------------------------------------------------------------------------

    def _acknowledge(self, stream_id: int, length: int) -> None:
        try:
            self.h2_connection.acknowledge_received_data(length, stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            # The stream is gone; the connection-level window is what matters now.
            self.h2_connection.increment_flow_control_window(length)

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Grant `length` bytes of receive window back after a message was consumed."""
        if length:
            self._acknowledge(stream_id, length)

    def forget_stream(self, stream_id: int) -> None:
        """Drop the read buffer of a stream we have answered."""
        self.message_read_buffers.pop(stream_id, None)

    def send_headers(self, stream_id: int) -> None:
        """Send the response headers that open a stream's answer."""
        self.h2_connection.send_headers(
            stream_id, [(":status", "200"), ("content-type", "application/grpc")]
        )

    def send_status(
        self,
        stream_id: int,
        code: int,
        message: str,
        details: bytes | None,
        *,
        headers_sent: bool,
    ) -> None:
        """End the stream with its gRPC status (trailers-only when nothing was sent yet)."""
        trailers: list[tuple[str, str]] = []
        if not headers_sent:
            trailers += [(":status", "200"), ("content-type", "application/grpc")]
        trailers.append(("grpc-status", str(code)))
        if message:
            trailers.append(("grpc-message", percent_encode(message)))
        if details is not None:
            # purerpc refuses grpc-* names in its trailer helper; the rich error model
            # lives exactly there, so we write this trailer ourselves.
            trailers.append(
                ("grpc-status-details-bin", base64.b64encode(details).decode().rstrip("="))
            )
        self.h2_connection.send_headers(stream_id, trailers, end_stream=True)

    def refuse_stream(self, stream_id: int) -> None:
        """Reset a stream with REFUSED_STREAM: the client may safely retry elsewhere."""
        self.forget_stream(stream_id)
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.h2_connection.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)

    def announce_drain(self) -> None:
        """Queue the drain's first GOAWAY (refusing nothing yet) and a PING after it."""
        self._queue_goaway(_MAX_STREAM_ID)
        with contextlib.suppress(h2.exceptions.ProtocolError):
            # A connection the client closed takes no PING; the drain's wait times out.
            self.h2_connection.ping(_DRAIN_PING)

    def send_goaway(self) -> int:
        """Queue a GOAWAY naming the last stream we will serve; return that stream id."""
        last = int(self.h2_connection.highest_inbound_stream_id)
        self._queue_goaway(last)
        return last

    def _queue_goaway(self, last_stream_id: int) -> None:
        # h2's `close_connection` also moves its state machine to CLOSED, after which the
        # in-flight streams could not send their answers. A graceful drain needs them to,
        # so the frame is serialised here and h2's state is left open.
        frame = GoAwayFrame(stream_id=0)
        frame.last_stream_id = last_stream_id
        frame.error_code = h2.errors.ErrorCodes.NO_ERROR
        self.h2_connection._data_to_send += frame.serialize()

    def take_outbound(self) -> bytearray:
        """Everything queued for the socket, handed over without a copy.

        purerpc's `data_to_send` copies the buffer into bytes: for a pack streamed out,
        a copy of every byte the server sends.
        """
        data = self.h2_connection._data_to_send
        self.h2_connection._data_to_send = bytearray()
        return data  # type: ignore[no-any-return]

    def outbound_bytes(self) -> int:
        """Bytes queued for the socket but not yet taken by the writer."""
        # purerpc's h2 patch keeps the outbound buffer as a bytearray we can measure.
        return len(self.h2_connection._data_to_send)


def percent_encode(message: str) -> str:
    """Encode a grpc-message as the gRPC spec says: bytes outside 0x20-0x7e and '%'."""
    out = []
    for byte in message.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)

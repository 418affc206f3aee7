"""One client connection: the h2 read loop, one writer task, and one task per RPC.

Ownership: the connection's nursery holds the writer and an RPC nursery; every RPC runs
in its own cancel scope inside it, with the client's `grpc-timeout` as deadline. A
RST_STREAM from the client cancels that RPC's scope; the client going away (EOF, broken
socket) cancels them all. Nothing is written to the socket except by the writer task, so
a cancelled RPC can never leave half a frame on the wire.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import h2.exceptions
import trio
from purerpc.grpclib.events import (
    MessageReceived,
    RequestEnded,
    RequestReceived,
    WindowUpdated,
)

from trio_gitaly import tree_state
from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.rpc.call import ServerCall, StreamClosedError, target_repository
from trio_gitaly.rpc.errors import OK, Status, cancelled_status, status_for
from trio_gitaly.rpc.h2conn import (
    BadRequest,
    ClientGoAway,
    DrainAcknowledged,
    MessageTooLarge,
    ServerConnection,
    StreamReset,
)

if TYPE_CHECKING:
    from trio_gitaly.rpc.server import GrpcServer

LOG = logging.getLogger("trio_gitaly.rpc")

# One read takes at most this much: a full h2 DATA frame of gRPC's usual 16 KiB frames
# several times over, without the allocate-and-shrink cost of huge buffers.
RECEIVE_BYTES = 64 * 1024
# A sender waits once this many bytes are queued for the socket: memory per connection
# stays bounded however fast handlers produce and however slowly the client reads.
OUTBOUND_HIGH_WATER_BYTES = 1024 * 1024
# After the last RPC ends, queued trailers and the GOAWAY get this long to leave.
FINAL_FLUSH_TIMEOUT_S = 5.0
# A draining connection waits this long for the client to acknowledge the first GOAWAY
# (its PING) before naming the last stream it serves anyway.
DRAIN_ACK_TIMEOUT_S = 2.0
# Once drained, how long the client gets to close the connection itself (grpcio does at
# once). Closing first could reset it with a request of its still unread, and the client
# would see a failed call instead of a refused stream it can retry (Go waits 1 s too).
CLOSE_LINGER_S = 1.0


class Connection:
    """Serves the gRPC streams of one accepted byte stream."""

    def __init__(
        self, stream: trio.abc.Stream, server: GrpcServer, *, transport: str, peer: str
    ) -> None:
        self._stream = stream
        self._server = server
        self.transport = transport
        self.peer = peer
        self.h2 = ServerConnection(
            max_message_bytes=server.config.max_message_bytes,
            max_concurrent_streams=server.config.max_concurrent_streams,
        )
        self._calls: dict[int, tuple[ServerCall, trio.MemorySendChannel[tuple[bytes, int]]]] = {}
        self._writer_lot = trio.lowlevel.ParkingLot()  # the writer waits for bytes here
        self._flushed_lot = trio.lowlevel.ParkingLot()  # senders wait for the writer here
        self._window_lot = trio.lowlevel.ParkingLot()  # senders wait for flow control here
        self._writing = False
        self._broken = False
        self._draining = False
        self._drain_acked = trio.Event()
        self._goaway_sent = False
        self._last_stream_id = 2**31 - 1
        self._tasks: trio.Nursery | None = None
        self._rpcs: trio.Nursery | None = None
        self._reader_scope = trio.CancelScope()
        # Its place in the live tree (tree_state.py), under the listener that accepted it.
        self._tree = tree_state.Node(
            "connection",
            tree_state.CONNECTION,
            self,
            _describe_connection,
            state=tree_state.RUNNING,
        )

    @property
    def in_flight(self) -> int:
        """Number of RPCs running on this connection."""
        return len(self._calls)

    async def serve(self) -> None:
        """Serve until the client leaves, the socket breaks, or a drain completes.

        Cancellation: every RPC of the connection is cancelled with it; the stream is
        closed by the caller (trio.serve_listeners closes what it accepted).
        """
        self.h2.initiate_connection()
        with tree_state.attached(self._tree):
            async with trio.open_nursery() as connection_nursery:
                self._tasks = connection_nursery
                connection_nursery.start_soon(self._writer)
                if self._draining:
                    self._begin_drain()
                async with trio.open_nursery() as rpcs:
                    self._rpcs = rpcs
                    with self._reader_scope:
                        await self._read_loop()
                    # The reader stops when the client left or the drain finished: either
                    # way no RPC of this connection has anyone to answer to any more.
                    rpcs.cancel_scope.cancel()
                with trio.move_on_after(FINAL_FLUSH_TIMEOUT_S):
                    await self._wait_flushed()
                connection_nursery.cancel_scope.cancel()

    def drain(self) -> None:
        """Send GOAWAY, refuse newer streams, and close once in-flight RPCs finish.

        As gRPC servers do: a first GOAWAY and a PING; once the client acknowledged the
        PING it has seen the GOAWAY and opens no more streams, so every stream it opened
        has arrived; the second GOAWAY names the last of them. No request the client sent
        in the meantime is lost or refused.
        """
        if self._draining:
            return
        self._draining = True
        self._tree.mark(tree_state.DRAINING)
        if self._tasks is not None:
            self._begin_drain()  # else serve() begins it once the connection is set up

    def _begin_drain(self) -> None:
        assert self._tasks is not None
        self.h2.announce_drain()
        self._wake_writer()
        self._tasks.start_soon(self._finish_drain)

    async def _finish_drain(self) -> None:
        with trio.move_on_after(DRAIN_ACK_TIMEOUT_S):
            await self._drain_acked.wait()
        self._last_stream_id = self.h2.send_goaway()
        self._goaway_sent = True
        self._wake_writer()
        self._close_when_idle()

    def _close_when_idle(self) -> None:
        if self._goaway_sent and not self._calls:
            linger = trio.current_time() + CLOSE_LINGER_S
            self._reader_scope.deadline = min(self._reader_scope.deadline, linger)

    # -- reading -------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self._stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                # h2 has queued a GOAWAY describing the violation; let it go out.
                LOG.warning(
                    "closing connection after an http/2 protocol error",
                    extra={"fields": {"error": str(exc), "peer.address": self.peer}},
                )
                self._wake_writer()
                return
            for event in events:
                self._dispatch(event)
            self._wake_writer()

    def _dispatch(self, event: Any) -> None:
        if isinstance(event, RequestReceived):
            self._start_call(event)
        elif isinstance(event, MessageReceived):
            entry = self._calls.get(event.stream_id)
            if entry is None:
                self.h2.acknowledge(event.stream_id, event.flow_controlled_length)
            elif entry[0].method.client_streaming or not entry[0].messages_received:
                entry[0].messages_received += 1
                entry[1].send_nowait((event.data, event.flow_controlled_length))
            else:
                # A unary request is one message; more would pile up unread.
                self.h2.acknowledge(event.stream_id, event.flow_controlled_length)
                self._abort_call(
                    event.stream_id,
                    GitalyError(
                        StatusCode.INTERNAL,
                        "grpc: client streaming protocol violation: more than one request message",
                    ),
                )
        elif isinstance(event, RequestEnded):
            entry = self._calls.get(event.stream_id)
            if entry is not None:
                entry[1].close()
        elif isinstance(event, WindowUpdated):
            self._window_lot.unpark_all()
        elif isinstance(event, StreamReset):
            self._abort_call(event.stream_id, None)
        elif isinstance(event, MessageTooLarge):
            self._abort_call(
                event.stream_id, GitalyError(StatusCode.RESOURCE_EXHAUSTED, event.message)
            )
        elif isinstance(event, BadRequest):
            self._end_stream(event.stream_id, Status(StatusCode(event.code), event.message))
        elif isinstance(event, DrainAcknowledged):
            self._drain_acked.set()
        elif isinstance(event, ClientGoAway):
            # h2 accepts nothing more from us after the client's GOAWAY: stop reading,
            # which cancels what is still running.
            self._reader_scope.cancel()

    def _start_call(self, request: RequestReceived) -> None:
        stream_id = request.stream_id
        if self._draining and stream_id > self._last_stream_id:
            self.h2.refuse_stream(stream_id)
            return
        found = self._server.lookup(request.service_name, request.method_name)
        if isinstance(found, Status):
            self._end_stream(stream_id, found)
            return
        method, handler = found
        deadline = math.inf
        if request.timeout is not None:
            deadline = trio.current_time() + request.timeout.total_seconds()
        sender, receiver = trio.open_memory_channel[tuple[bytes, int]](math.inf)
        metadata: dict[str, str | bytes] = {}
        for name, value in request.custom_metadata:
            metadata.setdefault(name, value)
        if request.user_agent is not None:
            metadata.setdefault("user-agent", request.user_agent)
        call = ServerCall(
            method=method,
            metadata=metadata,
            peer=self.peer,
            transport=self.transport,
            deadline=deadline,
            _connection=self,
            _stream_id=stream_id,
            _inbound=receiver,
        )
        self._calls[stream_id] = (call, sender)
        assert self._rpcs is not None
        self._rpcs.start_soon(self._run_call, call, handler, name=method.full_name)

    def _abort_call(self, stream_id: int, error: GitalyError | None) -> None:
        """Stop a running RPC: the client reset it (error None) or sent too much."""
        entry = self._calls.get(stream_id)
        if entry is None:
            return
        call, sender = entry
        sender.close()
        if error is None:
            call.reset = True
        else:
            call.abort = error
        if call.cancel_scope is not None:
            call.cancel_scope.cancel()

    # -- running an RPC ------------------------------------------------------------------

    async def _run_call(self, call: ServerCall, handler: Any) -> None:
        status = OK
        node = self._tree.add(call.method.name, tree_state.RPC, call, _describe_call)
        try:
            with trio.CancelScope(deadline=call.deadline) as scope:
                call.cancel_scope = scope
                try:
                    await self._server.invoke(call, handler)
                except Exception as exc:
                    status = self._failed(call, exc)
                except BaseExceptionGroup as group:
                    # Errors mixed with a Cancelled (the client reset while a handler's
                    # task failed): the errors decide the status and stop here; the
                    # Cancelled goes on to the scope it belongs to.
                    status = self._failed(call, group)
                    _, uncaught = group.split(Exception)
                    if uncaught is not None:
                        raise uncaught from None
            # An abort decides the status however the handler ended: closing its inbound
            # channel may have made it fail before the cancellation reached it.
            if call.abort is not None:
                status = status_for(call.abort, call)
            elif scope.cancelled_caught:
                status = cancelled_status(call)
            if not call.reset:
                self._end_stream(call._stream_id, status, headers_sent=call.headers_sent)
        finally:
            self._tree.remove(node)
            del self._calls[call._stream_id]
            self._close_when_idle()

    def _failed(self, call: ServerCall, exc: BaseException) -> Status:
        status = status_for(exc, call)
        if status.unexpected:
            LOG.error(
                "unexpected error in handler",
                exc_info=exc,
                extra={"fields": {"grpc.method": call.method.name, **call.fields}},
            )
        return status

    def _end_stream(self, stream_id: int, status: Status, *, headers_sent: bool = False) -> None:
        self.h2.forget_stream(stream_id)
        try:
            self.h2.send_status(
                stream_id,
                int(status.code),
                status.message,
                status.details,
                headers_sent=headers_sent,
            )
        except h2.exceptions.ProtocolError:
            return  # the stream or connection closed under us; nobody is listening
        self._wake_writer()

    # -- writing -------------------------------------------------------------------------

    async def send_message(self, call: ServerCall, framed: bytes) -> None:
        """Queue one framed message on the call's stream, honouring flow control.

        Cancellation: raises Cancelled while waiting for window or socket; the bytes
        already queued are followed by trailers or a reset, never by another message.
        """
        await trio.lowlevel.checkpoint()
        stream_id = call._stream_id
        try:
            if not call.headers_sent:
                self.h2.send_headers(stream_id)
                call.headers_sent = True
            view = memoryview(framed)
            while view:
                if call.reset or self._broken:
                    raise StreamClosedError("the client closed the stream")
                window = self.h2.flow_control_window(stream_id)
                if window <= 0:
                    await self._window_lot.park()
                    continue
                # A message that fits the window goes as it is, not copied.
                whole = window >= len(framed) and len(view) == len(framed)
                self.h2.send_data(stream_id, framed if whole else bytes(view[:window]))
                view = view[window:]
                self._wake_writer()
                while self.h2.outbound_bytes() > OUTBOUND_HIGH_WATER_BYTES and not self._broken:
                    await self._flushed_lot.park()
        except h2.exceptions.ProtocolError as exc:
            raise StreamClosedError(f"stream closed: {exc}") from None

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Return receive window to the client for a consumed message."""
        self.h2.acknowledge(stream_id, length)
        self._wake_writer()

    def _wake_writer(self) -> None:
        self._writer_lot.unpark_all()

    async def _writer(self) -> None:
        while True:
            data = self.h2.take_outbound()
            if not data:
                self._flushed_lot.unpark_all()
                await self._writer_lot.park()
                continue
            self._writing = True
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The client is gone: stop reading, which cancels its RPCs.
                self._broken = True
                self._reader_scope.cancel()
                self._flushed_lot.unpark_all()
                self._window_lot.unpark_all()
                return
            finally:
                self._writing = False
            self._flushed_lot.unpark_all()

    async def _wait_flushed(self) -> None:
        while (self.h2.outbound_bytes() or self._writing) and not self._broken:
            self._wake_writer()
            await self._flushed_lot.park()


def _describe_connection(connection: Connection) -> Mapping[str, object]:
    return {"peer": connection.peer, "transport": connection.transport}


def _describe_call(call: ServerCall) -> Mapping[str, object]:
    repository = target_repository(call.request)
    return {
        "method": call.method.full_name,
        "repository": (
            f"{repository.storage_name}/{repository.relative_path}" if repository else ""
        ),
        "client": call.peer,
        "transport": call.transport,
    }

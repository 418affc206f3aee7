"""What a handler and the middleware see of one RPC: its method, metadata and streams.

Handlers never yield: a streaming answer is `await call.send(message)` from an ordinary
coroutine, so no nursery or cancel scope is ever held across a `yield` (PEP 789).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import trio
from google.protobuf.message import DecodeError, Message

from trio_gitaly.errors import GitalyError, StatusCode

if TYPE_CHECKING:
    from trio_gitaly.rpc.connection import Connection


@dataclass(frozen=True)
class MethodInfo:
    """One RPC of a served service, as its descriptor declares it."""

    service: str  # "gitaly.ServerService"
    name: str  # "ServerInfo"
    request_type: type[Message]
    response_type: type[Message]
    client_streaming: bool
    server_streaming: bool
    # Gitaly's op_type annotation ("accessor", "mutator", "maintenance"; "" when none).
    operation: str = ""

    @property
    def full_name(self) -> str:
        """The gRPC path, e.g. "/gitaly.ServerService/ServerInfo"."""
        return f"/{self.service}/{self.name}"


def target_repository(request: Message | None) -> Any:
    """The request's `repository` field (gitaly.Repository), or None when it has none."""
    if request is None or "repository" not in request.DESCRIPTOR.fields_by_name:
        return None
    if not request.HasField("repository"):
        return None
    message: Any = request
    return message.repository


class StreamClosedError(Exception):
    """The client reset or left the stream; nothing more can be sent or received."""


class Handler(Protocol):
    """A service method: the first request message and the call, to an answer.

    Unary answers are returned; streaming answers are sent with `call.send` and the
    handler returns None. Client-streaming methods read further messages with
    `call.receive()`.
    """

    def __call__(self, request: Any, call: ServerCall, /) -> Awaitable[Message | None]: ...


Next = Callable[[], Awaitable[Message | None]]
Middleware = Callable[["ServerCall", Next], Awaitable[Message | None]]


@dataclass(eq=False)
class ServerCall:
    """One in-flight RPC.

    Attributes:
        method: the RPC being served.
        metadata: request metadata, lower-case names; binary (`-bin`) values as bytes.
        peer: the client's address ("127.0.0.1:50000", or the socket path for unix).
        transport: "unix", "tcp" or "tls".
        deadline: trio time at which the RPC ends with DEADLINE_EXCEEDED (inf: none).
        request: the first request message, once received.
        fields: extra log fields middleware and handlers add for the access log.
    """

    method: MethodInfo
    metadata: Mapping[str, str | bytes]
    peer: str
    transport: str
    deadline: float
    _connection: Connection
    _stream_id: int
    _inbound: trio.MemoryReceiveChannel[tuple[bytes, int]]
    request: Message | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    headers_sent: bool = False
    messages_received: int = 0
    reset: bool = False
    cancel_scope: trio.CancelScope | None = None
    # Set when the serving loop ends the call for the client's fault (a message over
    # the size limit): the status the client gets instead of the cancellation's.
    abort: GitalyError | None = None

    async def receive(self) -> Any:
        """The next request message, or None once the client has finished sending.

        Cancellation: raises Cancelled; the unread messages stay unacknowledged, which
        is fine because the stream is being torn down.
        """
        try:
            data, flow_length = await self._inbound.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None
        self._connection.acknowledge(self._stream_id, flow_length)
        try:
            return self.method.request_type.FromString(data)
        except DecodeError as exc:
            # grpc-go answers INTERNAL for undecodable requests; clients expect that code.
            raise GitalyError(
                StatusCode.INTERNAL, f"grpc: error unmarshalling request: {exc}"
            ) from None

    async def send(self, message: Message) -> None:
        """Send one response message, waiting for the client's flow-control window.

        Cancellation: raises Cancelled; a partly sent message is cut off by the stream's
        reset or trailers, never interleaved with another stream's bytes.
        """
        if self.reset:
            raise StreamClosedError("the client closed the stream")
        payload = message.SerializeToString()
        framed = struct.pack(">?I", False, len(payload)) + payload
        await self._connection.send_message(self, framed)

    def time_remaining(self) -> float:
        """Seconds until the deadline (inf when the client set none)."""
        if math.isinf(self.deadline):
            return math.inf
        return max(0.0, self.deadline - trio.current_time())

    def cancel_code(self) -> StatusCode:
        """The code a cancellation of this call means: its deadline, or the client."""
        if trio.current_time() >= self.deadline:
            return StatusCode.DEADLINE_EXCEEDED
        return StatusCode.CANCELLED

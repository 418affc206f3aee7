"""The one error boundary: every exception an RPC ends with becomes one gRPC status here.

Domain errors (`GitalyError`) keep their code, message and structured detail (sent as a
google.rpc.Status in `grpc-status-details-bin`, the detail packed as
`type.googleapis.com/gitaly.<Message>`, which is what GitLab's clients decode).
Anything unexpected becomes INTERNAL with a generic message: the traceback goes to the
log, never to the client. Cancellation is reported, never swallowed: the caller re-raises.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
from google.protobuf import any_pb2
from google.rpc import status_pb2

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.rpc.call import ServerCall, StreamClosedError

# grpc-go's texts for context errors; clients and log searches know them.
DEADLINE_MESSAGE = "context deadline exceeded"
CANCELLED_MESSAGE = "context canceled"


@dataclass(frozen=True)
class Status:
    """A gRPC status as it goes on the wire."""

    code: StatusCode
    message: str = ""
    details: bytes | None = None
    # True when the error was not one we expected: the boundary logs its traceback.
    unexpected: bool = False


OK = Status(StatusCode.OK)


def status_for(exc: BaseException, call: ServerCall) -> Status:
    """Map what an RPC raised to the status its client gets."""
    leaf = _meaningful_leaf(exc)
    if isinstance(leaf, trio.Cancelled):
        return cancelled_status(call)
    if isinstance(leaf, GitalyError):
        return Status(leaf.code, leaf.message, _details(leaf))
    if isinstance(leaf, StreamClosedError):
        return Status(StatusCode.CANCELLED, CANCELLED_MESSAGE)
    if isinstance(leaf, trio.TooSlowError):
        return Status(StatusCode.DEADLINE_EXCEEDED, DEADLINE_MESSAGE)
    correlation = call.fields.get("correlation_id", "")
    return Status(
        StatusCode.INTERNAL,
        f"internal server error (correlation_id: {correlation})",
        unexpected=True,
    )


def cancelled_status(call: ServerCall) -> Status:
    """The status of a call whose scope was cancelled: its deadline, or the client."""
    code = call.cancel_code()
    message = DEADLINE_MESSAGE if code is StatusCode.DEADLINE_EXCEEDED else CANCELLED_MESSAGE
    return Status(code, message)


def _meaningful_leaf(exc: BaseException) -> BaseException:
    """The exception that decides the status, out of a possibly nested group.

    A nursery in a handler wraps errors in groups; a domain error anywhere in one says
    more than the Cancelled its siblings got as a consequence.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = list(_leaves(exc))
    for wanted in (GitalyError, Exception):
        for leaf in leaves:
            if isinstance(leaf, wanted):
                return leaf
    return leaves[0]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _details(error: GitalyError) -> bytes | None:
    if error.detail is None:
        return None
    packed = any_pb2.Any()
    packed.Pack(error.detail)
    status = status_pb2.Status(code=int(error.code), message=error.message, details=[packed])
    serialized: bytes = status.SerializeToString()
    return serialized

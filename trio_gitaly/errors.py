"""Domain errors that carry a gRPC status code, a short message and a structured detail.

Any layer (storage, git, services) raises `GitalyError`; the one error boundary in
`trio_gitaly.rpc.errors` turns it into a gRPC status. This module sits below `rpc/` so
that storage and git code can speak in status codes without importing the serving layer.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.message import Message


class StatusCode(enum.IntEnum):
    """The gRPC status codes (numbers as on the wire)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @property
    def go_name(self) -> str:
        """grpc-go's name for the code, as Gitaly's logs and metrics label it."""
        return _GO_NAMES.get(self, "".join(part.title() for part in self.name.split("_")))


# grpc-go spells two codes differently from the CamelCase of their enum names.
_GO_NAMES = {StatusCode.OK: "OK", StatusCode.CANCELLED: "Canceled"}


class GitalyError(Exception):
    """An error with a gRPC code, as Gitaly's structerr: short lower-case message, detail.

    Args:
        code: the status code the client receives.
        message: short, lower-case, factual; interpolated values quoted.
        detail: an optional protobuf message sent as the first detail of the
            google.rpc.Status in `grpc-status-details-bin`.
        metadata: values that help an operator (paths, storage names); logged, never
            sent to the client.
    """

    def __init__(
        self,
        code: StatusCode,
        message: str,
        *,
        detail: Message | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.metadata: dict[str, Any] = dict(metadata or {})

    def wrap(self, prefix: str) -> GitalyError:
        """Return this error with `prefix: ` before its message, keeping the inner code.

        Gitaly's rule: wrapping never replaces a more specific inner code.
        """
        return GitalyError(
            self.code, f"{prefix}: {self.message}", detail=self.detail, metadata=self.metadata
        )

    def __repr__(self) -> str:
        return f"GitalyError({self.code.name}, {self.message!r})"


def invalid_argument(message: str, **metadata: Any) -> GitalyError:
    """INVALID_ARGUMENT: the request is wrong whatever the server's state."""
    return GitalyError(StatusCode.INVALID_ARGUMENT, message, metadata=metadata)


def not_found(message: str, **metadata: Any) -> GitalyError:
    """NOT_FOUND: the named entity does not exist."""
    return GitalyError(StatusCode.NOT_FOUND, message, metadata=metadata)


def failed_precondition(message: str, **metadata: Any) -> GitalyError:
    """FAILED_PRECONDITION: the system is not in a state the request needs."""
    return GitalyError(StatusCode.FAILED_PRECONDITION, message, metadata=metadata)


def already_exists(message: str, **metadata: Any) -> GitalyError:
    """ALREADY_EXISTS: the entity the request would create is there already."""
    return GitalyError(StatusCode.ALREADY_EXISTS, message, metadata=metadata)


def internal(message: str, **metadata: Any) -> GitalyError:
    """INTERNAL: the server failed; the message must not leak internals."""
    return GitalyError(StatusCode.INTERNAL, message, metadata=metadata)

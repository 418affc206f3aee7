"""One access-log line per RPC, with Gitaly's field names and grpc_logrus' levels."""

from __future__ import annotations

import logging
import time
from typing import Any

from google.protobuf.message import Message

from trio_gitaly.errors import StatusCode
from trio_gitaly.rpc.call import Next, ServerCall, target_repository
from trio_gitaly.rpc.errors import status_for

LOG = logging.getLogger("trio_gitaly.grpc")

# grpc_logrus' default mapping: client mistakes are info, server trouble is an error.
_LEVELS = {
    StatusCode.OK: logging.INFO,
    StatusCode.CANCELLED: logging.INFO,
    StatusCode.INVALID_ARGUMENT: logging.INFO,
    StatusCode.NOT_FOUND: logging.INFO,
    StatusCode.ALREADY_EXISTS: logging.INFO,
    StatusCode.UNAUTHENTICATED: logging.INFO,
    StatusCode.DEADLINE_EXCEEDED: logging.WARNING,
    StatusCode.PERMISSION_DENIED: logging.WARNING,
    StatusCode.RESOURCE_EXHAUSTED: logging.WARNING,
    StatusCode.FAILED_PRECONDITION: logging.WARNING,
    StatusCode.ABORTED: logging.WARNING,
    StatusCode.OUT_OF_RANGE: logging.WARNING,
    StatusCode.UNAVAILABLE: logging.WARNING,
}


async def access_log(call: ServerCall, call_next: Next) -> Message | None:
    """Log how the RPC ended: code, duration, repository and peer."""
    start = time.perf_counter()
    code, error = StatusCode.OK, ""
    try:
        return await call_next()
    except BaseException as exc:
        status = status_for(exc, call)
        code, error = status.code, status.message
        raise
    finally:
        entry: dict[str, Any] = {
            "grpc.service": call.method.service,
            "grpc.method": call.method.name,
            "grpc.code": code.go_name,
            "grpc.time_ms": round((time.perf_counter() - start) * 1000, 3),
            "peer.address": call.peer,
            "system": "grpc",
            "span.kind": "server",
        }
        repository = target_repository(call.request)
        if repository is not None:
            entry["grpc.request.repoStorage"] = repository.storage_name
            entry["grpc.request.repoPath"] = repository.relative_path
            if repository.gl_repository:
                entry["grpc.request.glRepository"] = repository.gl_repository
        entry.update(call.fields)
        if error:
            entry["error"] = error
        shape = (
            "streaming" if call.method.client_streaming or call.method.server_streaming else "unary"
        )
        LOG.log(
            _LEVELS.get(code, logging.ERROR),
            f"finished {shape} call with code {code.go_name}",
            extra={"fields": entry},
        )

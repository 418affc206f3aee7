"""Correlation ids: the client's (GitLab sends one per web request) or a new one."""

from __future__ import annotations

import secrets

from google.protobuf.message import Message

from trio_gitaly.log import CORRELATION_ID
from trio_gitaly.rpc.call import Next, ServerCall

# The metadata key GitLab's clients (labkit) send the correlation id under.
CORRELATION_METADATA = "x-gitlab-correlation-id"


async def correlate(call: ServerCall, call_next: Next) -> Message | None:
    """Tag the RPC, and every log line it causes, with its correlation id."""
    given = call.metadata.get(CORRELATION_METADATA)
    correlation_id = given if isinstance(given, str) and given else secrets.token_hex(13)
    call.fields["correlation_id"] = correlation_id
    token = CORRELATION_ID.set(correlation_id)
    try:
        return await call_next()
    finally:
        CORRELATION_ID.reset(token)

"""Per-RPC concurrency limiting (`[[concurrency]]`), keyed by repository relative path.

As in Gitaly the key leaves out the storage, and calls that name no repository are not
limited. A streaming call is admitted once its first message arrived and keeps its slot
until the stream ends, because the handler runs inside the slot.
"""

from __future__ import annotations

from google.protobuf.message import Message

from trio_gitaly.limits.server_limits import ServerLimits
from trio_gitaly.rpc.call import Middleware, Next, ServerCall, target_repository


def limit_concurrency(limits: ServerLimits) -> Middleware:
    """Middleware that runs each limited RPC inside a slot of its limiter."""

    async def middleware(call: ServerCall, call_next: Next) -> Message | None:
        if call.method.full_name not in limits.per_rpc:
            return await call_next()
        repository = target_repository(call.request)
        key: str = repository.relative_path if repository is not None else ""
        async with limits.rpc_slot(call.method.full_name, key, call.fields):
            return await call_next()

    return middleware

"""Disk cache invalidation: every mutating RPC holds a lease on its repository's cache.

The lease begins before the handler (the first request message, which names the
repository, has been received by then) and ends when the handler returns, fails or is
cancelled, so no cached answer outlives the change (storage/diskcache.py says why).
Methods without an operation (the health and intercepted ServerService RPCs) are not
looked at, as in Gitaly; accessors and maintenance RPCs are counted and let through.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message
from prometheus_client import CollectorRegistry, Counter

from trio_gitaly.rpc.call import Middleware, Next, ServerCall, target_repository
from trio_gitaly.storage.diskcache import DiskCache

#: The operation (Gitaly's op_type) whose RPCs take a lease.
MUTATOR = "mutator"


def invalidate_cache(cache: DiskCache, registry: CollectorRegistry) -> Middleware:
    """Middleware that runs each repository-scoped mutator inside a lease."""
    rpcs = Counter(
        "gitaly_cacheinvalidator_rpc",
        "Total number of RPCs encountered by cache invalidator",
        registry=registry,
    )
    operations = Counter(
        "gitaly_cacheinvalidator_optype",
        "Total number of operation types encountered by cache invalidator",
        ["type"],
        registry=registry,
    )

    # Resolved once per operation: labels() takes a lock and a lookup on every call.
    by_operation: dict[str, Any] = {}

    async def middleware(call: ServerCall, call_next: Next) -> Message | None:
        operation = call.method.operation
        if not operation:
            return await call_next()
        rpcs.inc()
        counter = by_operation.get(operation)
        if counter is None:
            counter = by_operation[operation] = operations.labels(operation)
        counter.inc()
        if operation != MUTATOR or not _repository_scoped(call.method.request_type):
            return await call_next()
        # A missing repository is reported as a failed invalidation by `leased`.
        async with cache.leased(target_repository(call.request), call.method.full_name):
            return await call_next()

    return middleware


def _repository_scoped(request_type: type[Message]) -> bool:
    # Storage-scoped mutators name a storage, not a repository: nothing to lease.
    return "repository" in request_type.DESCRIPTOR.fields_by_name

"""The middleware chain, outermost first, in Gitaly's order and for Gitaly's reasons.

correlation id (every later line, including the access log, must carry it) → metrics
→ access log (it reports the final code, so it sits outside the handler's errors) →
auth (after logging, so rejected calls are logged and counted) → limits (after auth, so
that an unauthenticated client cannot take queue slots) → disk cache invalidation (a
mutator's lease is held only while it runs, not while it queues) → handler.
"""

from __future__ import annotations

from collections.abc import Sequence

from trio_gitaly.config import AuthConfig
from trio_gitaly.limits.server_limits import ServerLimits
from trio_gitaly.metrics import Metrics
from trio_gitaly.rpc.call import Middleware
from trio_gitaly.rpc.middleware.access_log import access_log
from trio_gitaly.rpc.middleware.auth import authenticate
from trio_gitaly.rpc.middleware.cache_invalidation import invalidate_cache
from trio_gitaly.rpc.middleware.correlation import correlate
from trio_gitaly.rpc.middleware.limits import limit_concurrency
from trio_gitaly.rpc.middleware.metrics import measure
from trio_gitaly.storage.diskcache import DiskCache


def chain(
    *,
    metrics: Metrics,
    auth: AuthConfig,
    limits: ServerLimits | None = None,
    cache: DiskCache | None = None,
) -> Sequence[Middleware]:
    """The middleware every gRPC listener runs, outermost first."""
    middleware = [correlate, measure(metrics), access_log, authenticate(auth, metrics)]
    if limits is not None and limits.per_rpc:
        middleware.append(limit_concurrency(limits))
    if cache is not None:
        middleware.append(invalidate_cache(cache, metrics.registry))
    return tuple(middleware)

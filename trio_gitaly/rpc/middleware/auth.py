"""Gitaly's v2 token authentication.

A client sends `authorization: Bearer v2.<hex HMAC-SHA256(token, ts)>.<ts>` with `ts`
the Unix time in seconds; the token is valid for TOKEN_VALIDITY_S either side of our
clock. No header, or one that is not three dot-separated parts with a hex signature, is
UNAUTHENTICATED; anything else wrong is PERMISSION_DENIED. With `transitioning = true`
the outcome is logged and counted but the call goes through, so operators can roll a
token out without an outage. The health service never needs a token: load balancers
and orchestrators probe it without credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

from google.protobuf.message import Message

from trio_gitaly.clients.channel import sign as sign
from trio_gitaly.config import AuthConfig
from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.metrics import Metrics
from trio_gitaly.rpc.call import Middleware, Next, ServerCall

LOG = logging.getLogger("trio_gitaly.auth")

TOKEN_VALIDITY_S = 30
HEALTH_SERVICE = "grpc.health.v1.Health"
UNAUTHENTICATED = GitalyError(StatusCode.UNAUTHENTICATED, "authentication required")

# gitaly_authentications_total{status}: Gitaly's label for each outcome.
_STATUS_LABELS = {
    StatusCode.OK: "ok",
    StatusCode.UNAUTHENTICATED: "unauthenticated",
    StatusCode.PERMISSION_DENIED: "denied",
}


def check_token(header: str | bytes | None, token: str, now: float) -> None:
    """Raise the GitalyError a request with this authorization header deserves."""
    if not isinstance(header, str):
        raise UNAUTHENTICATED
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        raise UNAUTHENTICATED
    parts = credentials.strip().split(".", 2)
    if len(parts) != 3:
        raise UNAUTHENTICATED
    version, signature_hex, message = parts
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        raise UNAUTHENTICATED from None
    if version != "v2":
        raise _denied("invalid token version")
    expected = hmac.new(token.encode(), message.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise _denied("wrong hmac signature")
    try:
        issued = int(message)
    except ValueError:
        raise _denied(f"cannot parse timestamp: {message!r}") from None
    if issued < now - TOKEN_VALIDITY_S:
        raise _denied("token has expired")
    if issued > now + TOKEN_VALIDITY_S:
        raise _denied("token's validity window is in future")


def _denied(reason: str) -> GitalyError:
    return GitalyError(StatusCode.PERMISSION_DENIED, f"permission denied: {reason}")


def authenticate(config: AuthConfig, metrics: Metrics) -> Middleware:
    """The auth middleware for `config`: enforcing, transitioning, or off."""
    enforced = "false" if config.transitioning else "true"

    async def middleware(call: ServerCall, call_next: Next) -> Message | None:
        if call.method.service == HEALTH_SERVICE:
            return await call_next()
        if not config.token:
            metrics.authentications.labels(enforced, "server disabled authentication").inc()
            return await call_next()
        try:
            check_token(call.metadata.get("authorization"), config.token, time.time())
        except GitalyError as error:
            metrics.authentications.labels(enforced, _STATUS_LABELS[error.code]).inc()
            if not config.transitioning:
                raise
            LOG.warning(
                "authentication failed, allowed because auth is transitioning",
                extra={"fields": {"error": error.message, "grpc.method": call.method.name}},
            )
        else:
            label = "would be ok" if config.transitioning else "ok"
            metrics.authentications.labels(enforced, label).inc()
        return await call_next()

    return middleware

"""`GITALY_HOOKS_PAYLOAD`: what a hook process needs to call back into the server.

base64 of a JSON object with Gitaly's keys (internal/git/gitcmd/hooks_payload.go), so a
hook built for either server could read it. Kept free of heavy imports: every hook run
decodes it, and a hook that was not requested exits without loading anything else.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from typing import Any, Final

#: The environment variable git passes on to every hook it runs.
PAYLOAD_ENV: Final = "GITALY_HOOKS_PAYLOAD"


class Hook(enum.IntFlag):
    """The hooks a payload asks for (Gitaly's bitmask values)."""

    REFERENCE_TRANSACTION = 1
    UPDATE = 2
    PRE_RECEIVE = 4
    POST_RECEIVE = 8
    PACK_OBJECTS = 16
    PROC_RECEIVE = 32

    @classmethod
    def by_name(cls, name: str) -> Hook | None:
        """The hook git runs as `name` ("pre-receive", ...), or None for others."""
        return _BY_NAME.get(name)


_BY_NAME: Final = {
    "reference-transaction": Hook.REFERENCE_TRANSACTION,
    "update": Hook.UPDATE,
    "pre-receive": Hook.PRE_RECEIVE,
    "post-receive": Hook.POST_RECEIVE,
    "proc-receive": Hook.PROC_RECEIVE,
}
#: Hook names the hooks directory provides.
HOOK_NAMES: Final = tuple(_BY_NAME)
#: What a receive-pack asks for (Gitaly's ReceivePackHooks without proc-receive).
RECEIVE_PACK_HOOKS: Final = (
    Hook.REFERENCE_TRANSACTION | Hook.UPDATE | Hook.PRE_RECEIVE | Hook.POST_RECEIVE
)
# Gitaly: a zero bitmask (older payloads) means every hook except proc-receive.
_ALL_BUT_PROC_RECEIVE: Final = Hook(sum(Hook) & ~Hook.PROC_RECEIVE)


class PayloadError(ValueError):
    """The payload is missing or malformed."""


@dataclass(frozen=True)
class UserDetails:
    """Who pushes: GitLab's user id (gl_id), user name, protocol and remote IP."""

    userid: str = ""
    username: str = ""
    protocol: str = ""
    remote_ip: str = ""


@dataclass(frozen=True)
class HooksPayload:
    """Decoded `GITALY_HOOKS_PAYLOAD`.

    Attributes:
        repository: the Repository message as protojson text (Gitaly's encoding), so a
            hook can send it back without this module importing protobuf.
        requested_hooks: which hooks should call the server; others exit 0 at once.
        internal_socket: the unix socket of the server's internal listener.
        internal_socket_token: the auth token (empty when auth is off).
    """

    repository: str
    requested_hooks: Hook
    object_format: str
    runtime_dir: str
    internal_socket: str
    internal_socket_token: str = ""
    user_details: UserDetails | None = None

    def is_requested(self, hook: Hook) -> bool:
        """Whether `hook` should be served for this payload."""
        requested = self.requested_hooks or _ALL_BUT_PROC_RECEIVE
        return bool(requested & hook)

    def encode(self) -> str:
        """The environment value: base64 of the JSON object."""
        document: dict[str, Any] = {
            "requested_hooks": int(self.requested_hooks),
            "object_format": self.object_format,
            "runtime_dir": self.runtime_dir,
            "internal_socket": self.internal_socket,
            "internal_socket_token": self.internal_socket_token,
            "transaction": None,
            "user_details": None,
            "repository": self.repository,
        }
        if self.user_details is not None:
            document["user_details"] = {
                "username": self.user_details.username,
                "userid": self.user_details.userid,
                "protocol": self.user_details.protocol,
                "remote_ip": self.user_details.remote_ip,
            }
        return base64.b64encode(json.dumps(document).encode()).decode("ascii")

    @classmethod
    def decode(cls, value: str) -> HooksPayload:
        """Parse the environment value; raise `PayloadError` saying what is wrong."""
        try:
            document = json.loads(base64.b64decode(value, validate=True))
        except ValueError as exc:
            raise PayloadError(f"malformed {PAYLOAD_ENV}: {exc}") from None
        if not isinstance(document, dict):
            raise PayloadError(f"malformed {PAYLOAD_ENV}: not a JSON object")
        try:
            user = document.get("user_details")
            return cls(
                repository=_repository(document),
                requested_hooks=Hook(_bitmask(document)),
                object_format=_text(document, "object_format"),
                runtime_dir=_text(document, "runtime_dir"),
                internal_socket=_text(document, "internal_socket"),
                internal_socket_token=_text(document, "internal_socket_token"),
                user_details=None
                if user is None
                else UserDetails(
                    userid=_text(user, "userid"),
                    username=_text(user, "username"),
                    protocol=_text(user, "protocol"),
                    remote_ip=_text(user, "remote_ip"),
                ),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise PayloadError(f"malformed {PAYLOAD_ENV}: {exc}") from None


def _repository(document: dict[str, Any]) -> str:
    # Gitaly unmarshals the repository (protojson) at once and fails on anything that is
    # not an object, even for a hook it will not run; checking the JSON keeps this module
    # free of protobuf while failing the same payloads.
    text = _text(document, "repository")
    if not isinstance(json.loads(text or "null"), dict):
        raise TypeError("repository must be a JSON object")
    return text


def _bitmask(document: dict[str, Any]) -> int:
    # Go decodes into an unsigned integer: strings, floats, booleans and negative numbers
    # are errors there, and Python's int() would accept most of them.
    value = document.get("requested_hooks")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError("requested_hooks must be a non-negative integer")
    return value


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value

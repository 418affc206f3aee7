"""A requested hook calls HookService over the internal socket and relays the answer.

The call runs in one thread (`clients.relay_call`, as the ssh helper's): stdin is sent as
it arrives while each answer's stderr and stdout are written out at once, so a hook's
output reaches the pushing client while the hook still runs. Imported only for requested
hooks (see `entry`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import Message

from trio_gitaly.clients.channel import AddressError, auth_metadata, dial, parse_address
from trio_gitaly.clients.relay_call import Relay, call
from trio_gitaly.hooks.entry import TRANSACTION_STATES, write_all
from trio_gitaly.hooks.payload import Hook, HooksPayload
from trio_gitaly.rpc.gen.gitaly import hook_pb2, shared_pb2

_SERVICE: Final = "/gitaly.HookService/"
#: stdin is sent in pieces of at most this size (Gitaly's stream writer buffer).
STDIN_CHUNK_BYTES: Final = 128 * 1024
# Go's strconv.Atoi: an optional sign and ASCII digits (int() would take "1_0", " 1").
_GO_INT: Final = re.compile(r"[+-]?[0-9]+")
# What gRPC allows in a text metadata value: printable ASCII.
_METADATA_VALUE: Final = re.compile(r"[\x20-\x7e]*")


# The client-streaming hooks: method, request and response types.
_BIDI: Final[dict[Hook, tuple[str, Any, Any]]] = {
    Hook.PRE_RECEIVE: (
        "PreReceiveHook",
        hook_pb2.PreReceiveHookRequest,
        hook_pb2.PreReceiveHookResponse,
    ),
    Hook.POST_RECEIVE: (
        "PostReceiveHook",
        hook_pb2.PostReceiveHookRequest,
        hook_pb2.PostReceiveHookResponse,
    ),
    Hook.REFERENCE_TRANSACTION: (
        "ReferenceTransactionHook",
        hook_pb2.ReferenceTransactionHookRequest,
        hook_pb2.ReferenceTransactionHookResponse,
    ),
    Hook.PROC_RECEIVE: (
        "ProcReceiveHook",
        hook_pb2.ProcReceiveHookRequest,
        hook_pb2.ProcReceiveHookResponse,
    ),
}


class HookCallError(Exception):
    """HookService could not be reached or failed the call.

    The message says why, for whoever debugs the entry point; git's client only ever sees
    `entry.ERROR_MESSAGE`.
    """


def call_hook(
    hook: Hook, args: Sequence[str], payload: HooksPayload, environment: list[str]
) -> int:
    """Call HookService for `hook`, relay its output; return the hook's exit status.

    Args:
        hook: a hook `entry.check_arguments` accepted `args` for.
        args: git's arguments to the hook.
        payload: the decoded payload (the hook is requested).
        environment: the hook's environment as "NAME=value" strings.

    Raises:
        HookCallError: the payload's repository is not valid protojson or it names no
            socket, the call failed (no server, bad token, an error status), or our
            stdout or stderr broke.
    """
    try:
        repository = json_format.Parse(payload.repository, shared_pb2.Repository())
    except json_format.ParseError as exc:
        raise HookCallError(f"payload repository: {exc}") from exc
    metadata = _metadata(payload)
    try:
        scheme, target = parse_address(f"unix://{payload.internal_socket}")
    except AddressError as exc:
        raise HookCallError(f"payload internal_socket: {exc}") from exc
    try:
        method, first, response_type, request_type = _request(
            hook, list(args), repository, environment
        )
    except ValueError as exc:
        # An argument or variable protobuf cannot carry (not UTF-8).
        raise HookCallError(f"building the request: {exc}") from exc
    try:
        dialled = dial(scheme, target)
    except OSError as exc:
        raise HookCallError(f"connecting to HookService: {exc}") from exc
    exit_status = 0

    def on_message(data: bytes) -> None:
        nonlocal exit_status
        response = response_type.FromString(data)
        if response.HasField("exit_status"):
            exit_status = response.exit_status.value
        # stderr first, as gitaly-hooks does for a message that carries both.
        if response.stderr:
            write_all(2, response.stderr)
        if response.stdout:
            write_all(1, response.stdout)

    relay = Relay(
        # UpdateHook takes no stdin: its one request is the whole call.
        input_fd=None if request_type is None else 0,
        on_message=on_message,
        wrap_input=lambda chunk: request_type(stdin=chunk).SerializeToString(),
        input_chunk_bytes=STDIN_CHUNK_BYTES,
    )
    with dialled.sock:
        try:
            status = call(
                dialled.sock,
                _SERVICE + method,
                first=first.SerializeToString(),
                relay=relay,
                metadata=metadata,
                authority=dialled.authority,
                scheme=dialled.scheme,
            )
        except OSError as exc:
            raise HookCallError(f"relaying output: {exc}") from exc
    if status.code != 0:
        raise HookCallError(f"calling HookService: {status.message} ({status.code_name})")
    return int(exit_status)


def push_options() -> list[str]:
    """The push options git passed in GIT_PUSH_OPTION_COUNT / GIT_PUSH_OPTION_<i>.

    As gitaly-hooks: a count that is not a number means none.
    """
    count = os.environ.get("GIT_PUSH_OPTION_COUNT", "0")
    if not _GO_INT.fullmatch(count):
        return []
    return [os.environ.get(f"GIT_PUSH_OPTION_{i}", "") for i in range(int(count))]


def _metadata(payload: HooksPayload) -> list[tuple[str, str]]:
    metadata = auth_metadata(payload.internal_socket_token)
    user = payload.user_details
    if user is not None:
        # gitaly-hooks passes the pusher on for the server's logs; gRPC refuses values
        # that are not printable ASCII, and a log field is not worth failing a push for.
        for key, value in (
            ("user_id", user.userid),
            ("username", user.username),
            ("remote_ip", user.remote_ip),
        ):
            if _METADATA_VALUE.fullmatch(value):
                metadata.append((key, value))
    correlation_id = os.environ.get("CORRELATION_ID", "")
    if correlation_id and _METADATA_VALUE.fullmatch(correlation_id):
        metadata.append(("x-gitlab-correlation-id", correlation_id))
    return metadata


def _request(
    hook: Hook,
    args: list[str],
    repository: shared_pb2.Repository,
    environment: list[str],
) -> tuple[str, Message, Any, Any]:
    """The method, its first request, the response type, and the type of the requests
    that carry stdin (None for UpdateHook, which reads none)."""
    common: dict[str, Any] = {"repository": repository, "environment_variables": environment}
    if hook is Hook.UPDATE:
        ref, old_value, new_value = args
        request = hook_pb2.UpdateHookRequest(
            # Ref names are bytes; Python decoded argv with surrogateescape.
            ref=ref.encode("utf-8", "surrogateescape"),
            old_value=old_value,
            new_value=new_value,
            **common,
        )
        return "UpdateHook", request, hook_pb2.UpdateHookResponse, None
    method, request_type, response_type = _BIDI[hook]
    fields: dict[str, Any] = dict(common)
    if hook in (Hook.PRE_RECEIVE, Hook.POST_RECEIVE):
        fields["git_push_options"] = push_options()
    elif hook is Hook.REFERENCE_TRANSACTION:
        fields["state"] = TRANSACTION_STATES.index(args[0])
    return method, request_type(**fields), response_type, request_type

"""A requested hook calls HookService over the internal socket and relays the answer.

grpcio's blocking client suits a process that lives for one call: the request iterator
(stdin, read as it arrives) runs in grpcio's own thread while this thread writes each
answer's stderr and stdout out at once, so a hook's output reaches the pushing client
while the hook still runs. Imported only for requested hooks (see `entry`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from trio_gitaly.clients.channel import AddressError, auth_metadata, open_channel
from trio_gitaly.hooks.entry import TRANSACTION_STATES, write_all
from trio_gitaly.hooks.payload import Hook, HooksPayload
from trio_gitaly.rpc.gen.gitaly import hook_pb2, shared_pb2

_SERVICE: Final = "/gitaly.HookService/"
#: stdin is sent in pieces of at most this size (Gitaly's stream writer buffer).
STDIN_CHUNK_BYTES: Final = 128 * 1024
# Go's strconv.Atoi: an optional sign and ASCII digits (int() would take "1_0", " 1").
_GO_INT: Final = re.compile(r"[+-]?[0-9]+")
# What grpcio accepts in a text metadata value.
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
        channel = open_channel(f"unix://{payload.internal_socket}")
    except AddressError as exc:
        raise HookCallError(f"payload internal_socket: {exc}") from exc
    with channel:
        try:
            responses = _start(channel, hook, list(args), repository, environment, metadata)
            return _relay(responses)
        except grpc.RpcError as exc:
            raise HookCallError(f"calling HookService: {exc}") from exc
        except OSError as exc:
            raise HookCallError(f"relaying output: {exc}") from exc
        except ValueError as exc:
            # An argument or variable protobuf cannot carry (not UTF-8).
            raise HookCallError(f"building the request: {exc}") from exc


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
        # gitaly-hooks passes the pusher on for the server's logs; grpcio refuses values
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


def _start(
    channel: grpc.Channel,
    hook: Hook,
    args: list[str],
    repository: shared_pb2.Repository,
    environment: list[str],
    metadata: list[tuple[str, str]],
) -> Iterator[Any]:
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
        update = channel.unary_stream(
            _SERVICE + "UpdateHook",
            request_serializer=hook_pb2.UpdateHookRequest.SerializeToString,
            response_deserializer=hook_pb2.UpdateHookResponse.FromString,
        )
        return iter(update(request, metadata=metadata))
    method, request_type, response_type = _BIDI[hook]
    fields: dict[str, Any] = dict(common)
    if hook in (Hook.PRE_RECEIVE, Hook.POST_RECEIVE):
        fields["git_push_options"] = push_options()
    elif hook is Hook.REFERENCE_TRANSACTION:
        fields["state"] = TRANSACTION_STATES.index(args[0])
    first = request_type(**fields)
    bidi = channel.stream_stream(
        _SERVICE + method,
        request_serializer=request_type.SerializeToString,
        response_deserializer=response_type.FromString,
    )
    return iter(bidi(_requests(first, request_type), metadata=metadata))


def _requests(first: Message, make: Callable[..., Message]) -> Iterator[Message]:
    # Runs in grpcio's sending thread: a hook that reads its stdin slowly (git feeding
    # pre-receive) never stops this thread from writing output.
    yield first
    while chunk := os.read(0, STDIN_CHUNK_BYTES):
        yield make(stdin=chunk)


def _relay(responses: Iterator[Any]) -> int:
    exit_status = 0
    for response in responses:
        if response.HasField("exit_status"):
            exit_status = response.exit_status.value
        # stderr first, as gitaly-hooks does for a message that carries both.
        if response.stderr:
            write_all(2, response.stderr)
        if response.stdout:
            write_all(1, response.stdout)
    return int(exit_status)

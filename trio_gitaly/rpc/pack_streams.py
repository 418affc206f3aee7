"""Adapters between a gRPC stream and the byte transports of trio_gitaly.transport.

Shared by SSHService and SmartHTTPService (services never import each other): the
client's bytes arrive in one field of each request message, git's output leaves in
fields of response messages, and receive-pack needs the hooks payload of the request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from google.protobuf import json_format
from google.protobuf.message import Message

from trio_gitaly.hooks.payload import UserDetails
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import shared_pb2
from trio_gitaly.rpc.repo import Repo
from trio_gitaly.rpc.services import Dependencies
from trio_gitaly.transport.commands import Hooks, Target
from trio_gitaly.transport.push_hooks import push_hooks
from trio_gitaly.transport.session import Sink


class RequestBytes:
    """A `ByteSource` reading one bytes field from each further request message."""

    def __init__(self, call: ServerCall, field: str) -> None:
        self._call = call
        self._field = field

    async def read(self) -> bytes:
        """The next non-empty chunk, or b"" once the client closed its side.

        Cancellation: raises Cancelled; nothing is lost that the client still needs.
        """
        while True:
            message = await self._call.receive()
            if message is None:
                return b""
            data: bytes = getattr(message, self._field)
            if data:
                return data


class ResponseWriter:
    """Sinks that send chunks as response messages, one message at a time.

    stdout and stderr are relayed by different tasks; the lock keeps each message whole
    and in the order it was written.
    """

    def __init__(self, call: ServerCall, response: Callable[..., Message]) -> None:
        self._call = call
        self._response = response
        self._lock = trio.Lock()

    def sink(self, field: str) -> Sink:
        """A sink sending each chunk as `response(**{field: chunk})`."""

        async def send(chunk: bytes) -> None:
            async with self._lock:
                await self._call.send(self._response(**{field: chunk}))

        return send

    async def send(self, message: Message) -> None:
        """Send a whole message (the final exit status), after any chunk in flight.

        Cancellation: raises Cancelled; the message may not have been sent.
        """
        async with self._lock:
            await self._call.send(message)


async def receive_pack_hooks(
    deps: Dependencies, request: Any, repo: Repo, call: ServerCall, *, protocol: str
) -> Hooks:
    """The hooks receive-pack runs for the push `request` (with its repository, gl_id and
    gl_username) asks for, naming the pusher as the front end reported them.

    Cancellation: raises Cancelled; nothing was changed.
    """
    repository: shared_pb2.Repository = request.repository
    return await push_hooks(
        deps.hooks,
        deps.git,
        repository_json=json_format.MessageToJson(repository, indent=None),
        repo_path=repo.path,
        user=UserDetails(
            userid=request.gl_id,
            username=request.gl_username,
            protocol=protocol,
            remote_ip=remote_ip(call),
        ),
    )


def target(repo: Repo, request: Any) -> Target:
    """The transport target of a request with `git_config_options` and `git_protocol`."""
    return Target(
        repo.path,
        repo.env(),
        git_config_options=tuple(request.git_config_options),
        git_protocol=request.git_protocol,
    )


def remote_ip(call: ServerCall) -> str:
    """The end user's IP address, as the front end reports it in metadata ("" if not)."""
    value = call.metadata.get("remote_ip", "")
    return value if isinstance(value, str) else ""

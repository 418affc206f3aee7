"""Helpers for tests: configs for test servers, the git CLI, grpcio calls by path."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import msgspec
import pytest
import trio
from google.protobuf.message import Message

from trio_gitaly import config as config_module
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import shared_pb2


def make_config(base: str, **overrides: Any) -> Config:
    """A config for a test server: one storage, unix + TCP + HTTP on ephemeral ports."""
    os.makedirs(os.path.join(base, "storage"), exist_ok=True)
    os.makedirs(os.path.join(base, "run"), exist_ok=True)
    text = f"""
socket_path = "{base}/gitaly.socket"
listen_addr = "127.0.0.1:0"
prometheus_listen_addr = "127.0.0.1:0"
runtime_dir = "{base}/run"
graceful_restart_timeout = "5s"
[[storage]]
name = "default"
path = "{base}/storage"
"""
    cfg = config_module.parse(text)
    return msgspec.structs.replace(cfg, **overrides) if overrides else cfg


def storage_path(cfg: Config, name: str = "default") -> str:
    """The directory of a configured storage."""
    return next(s.path for s in cfg.storage if s.name == name)


def git(*args: str, cwd: str | None = None) -> str:
    """Run the git CLI (the reference our answers are compared with); return stdout."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"}
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return result.stdout


@dataclass
class Client:
    """A grpcio channel with helpers that call methods by path, from a thread."""

    channel: grpc.Channel

    async def unary(
        self,
        path: str,
        request: Message,
        response_type: type[Message],
        *,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float | None = 10.0,
    ) -> Any:
        """Call a unary method; raises grpc.RpcError on a non-OK status."""
        method = self.channel.unary_unary(
            path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return await trio.to_thread.run_sync(
            lambda: method(request, metadata=tuple(metadata), timeout=timeout)
        )

    async def stream(
        self,
        path: str,
        request: Message | Sequence[Message],
        response_type: type[Message],
        *,
        client_streaming: bool = False,
        metadata: Sequence[tuple[str, str]] = (),
        timeout: float | None = 30.0,
    ) -> list[Any]:
        """Call a server-streaming (or, with `client_streaming`, bidi) method; all answers."""
        if client_streaming:
            assert isinstance(request, Sequence)
            requests = list(request)
            serializer = type(requests[0]).SerializeToString
            bidi = self.channel.stream_stream(
                path, request_serializer=serializer, response_deserializer=response_type.FromString
            )
            return await trio.to_thread.run_sync(
                lambda: list(bidi(iter(requests), metadata=tuple(metadata), timeout=timeout))
            )
        assert isinstance(request, Message)
        method = self.channel.unary_stream(
            path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return await trio.to_thread.run_sync(
            lambda: list(method(request, metadata=tuple(metadata), timeout=timeout))
        )

    async def stream_error(
        self, path: str, request: Message, response_type: type[Message], **kw: Any
    ) -> grpc.RpcError:
        """Call a server-streaming method that must fail; return the error."""
        with pytest.raises(grpc.RpcError) as info:
            await self.stream(path, request, response_type, **kw)
        return info.value

    async def error(
        self, path: str, request: Message, response_type: type[Message], **kw: Any
    ) -> grpc.RpcError:
        """Call a unary method that must fail; return the error."""
        with pytest.raises(grpc.RpcError) as info:
            await self.unary(path, request, response_type, **kw)
        return info.value


def error_detail(error: grpc.RpcError, detail_type: type[Message]) -> Any:
    """The structured detail (first google.rpc.Status detail) of a failed call, unpacked."""
    from google.rpc import status_pb2

    trailers = dict(error.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    detail = detail_type()
    assert status.details and status.details[0].Unpack(detail), status
    return detail


def repository(
    relative_path: str, storage: str = "default", **fields: Any
) -> shared_pb2.Repository:
    """A gitaly.Repository message for a repository of the test server's storage."""
    return shared_pb2.Repository(storage_name=storage, relative_path=relative_path, **fields)


def new_path(config: Config, name: str) -> str:
    """Where a repository named `name` lives in the test server's (default) storage."""
    return os.path.join(storage_path(config), name)


@asynccontextmanager
async def running_client(config: Config) -> AsyncIterator[Client]:
    """A server of this block's own, and a grpcio client for it.

    For hypothesis tests: pytest-trio runs each example in a trio run of its own but
    hands every example the async fixtures of the first, whose server is stopped by then.
    """
    from trio_gitaly.nursery_tree import serve

    async with trio.open_nursery() as nursery:
        running = await nursery.start(serve, config)
        channel = grpc.insecure_channel(running.addresses["tcp"][0])
        try:
            yield Client(channel)
        finally:
            channel.close()
            nursery.cancel_scope.cancel()

"""Shared fixtures: a real server tree started in-process, and grpcio clients for it.

grpcio is an independent gRPC implementation (C core), so talking to our server through
it keeps the wire format honest. Its calls block, so tests make them in a worker thread.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import trio
from hypothesis import settings

from tests.helpers import Client, make_config
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer, serve

# CI judges the change, not the luck of a random draw: there hypothesis replays the same
# examples every run; developers' runs draw new ones and find the new edge cases.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A short temporary directory: unix socket paths must stay under 108 bytes."""
    path = tempfile.mkdtemp(prefix="tg-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config(short_dir: str) -> Config:
    """The default test server config."""
    return make_config(short_dir)


@pytest.fixture
async def server(nursery: trio.Nursery, config: Config) -> RunningServer:
    """A running tree on `config`; cancelled with the test's nursery."""
    running: RunningServer = await nursery.start(serve, config)
    return running


@pytest.fixture
def connect() -> Iterator[Callable[..., Client]]:
    """Open grpcio clients to a target ("127.0.0.1:1234", "unix:/path"); closed after."""
    channels: list[grpc.Channel] = []

    def open_client(
        target: str, credentials: grpc.ChannelCredentials | None = None, **options: Any
    ) -> Client:
        opts = list(options.items())
        if credentials is None:
            channel = grpc.insecure_channel(target, options=opts)
        else:
            channel = grpc.secure_channel(target, credentials, options=opts)
        channels.append(channel)
        return Client(channel)

    yield open_client
    for channel in channels:
        channel.close()


@pytest.fixture
async def client(server: RunningServer, connect: Callable[..., Client]) -> Client:
    """A grpcio client on the test server's TCP listener."""
    return connect(server.addresses["tcp"][0])

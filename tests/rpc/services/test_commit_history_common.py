"""Support for the CommitService history tests: repositories and the git CLI's answers.

Holds no tests, and one fixture (`thread_client`, imported by the test modules).
Expected commits are built from `git cat-file commit` output, so every
test compares what the server says with what git says about the same repository.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pytest
import trio

from tests.helpers import Client, storage_path
from tests.helpers import git as cli_git
from tests.helpers import repository as repository
from tests.repos import GIT_ENV, git, rich_repository
from trio_gitaly.config import Config
from trio_gitaly.git.objects import parse_commit
from trio_gitaly.nursery_tree import RunningServer, serve
from trio_gitaly.rpc.gen.gitaly import shared_pb2
from trio_gitaly.rpc.gitproto import git_commit

SERVICE = "/gitaly.CommitService/"
FORMATS = ["sha1", "sha256"]


def repo_path(config: Config, relative_path: str) -> str:
    """Where a test repository lives: inside the server's storage."""
    return os.path.join(storage_path(config), relative_path)


def rich(config: Config, object_format: str = "sha1") -> tuple[str, dict[str, str]]:
    """rich_repository() as "rich.git" in the storage; its path and named commits."""
    path = repo_path(config, "rich.git")
    return path, rich_repository(path, object_format)


def empty(config: Config, name: str = "empty.git", object_format: str = "sha1") -> str:
    """An empty bare repository in the storage (HEAD -> refs/heads/main)."""
    path = repo_path(config, name)
    cli_git("init", "--bare", "--quiet", f"--object-format={object_format}", "-b", "main", path)
    return path


def lines(path: str, *args: str) -> list[str]:
    """The output lines of a git command in repository `path`."""
    return git(path, *args).decode().splitlines()


def expected_commit(
    path: str, oid: str, *, trailers: bool = False, env: dict[str, str] | None = None
) -> shared_pb2.GitCommit:
    """The GitCommit of `oid` from git's raw object (`git cat-file commit`).

    `env` adds environment variables (a quarantine's GIT_OBJECT_DIRECTORY).
    """
    data = subprocess.run(
        ["git", "-C", path, "cat-file", "commit", oid],
        env={**GIT_ENV, **(env or {})},
        capture_output=True,
        check=True,
    ).stdout
    return git_commit(parse_commit(oid, data), with_trailers=trailers)


def expected_commits(
    path: str, oids: Iterable[str], *, trailers: bool = False, env: dict[str, str] | None = None
) -> list[shared_pb2.GitCommit]:
    """`expected_commit` of each id, in order."""
    return [expected_commit(path, oid, trailers=trailers, env=env) for oid in oids]


def flatten(responses: Sequence[Any], field: str = "commits") -> list[Any]:
    """The items of a list field over all messages of a streamed answer."""
    return [item for response in responses for item in getattr(response, field)]


def ids(commits: Iterable[shared_pb2.GitCommit]) -> list[str]:
    """The ids of `commits`, in order."""
    return [commit.id for commit in commits]


@pytest.fixture
def thread_client(config: Config, connect: Callable[..., Client]) -> Iterator[Client]:
    """A client of a server running in a thread of its own, for hypothesis tests.

    pytest-trio runs each hypothesis example in a new trio run, where the `server`
    fixture of the first run no longer serves; this server outlives the examples.
    """
    started = threading.Event()
    state: dict[str, Any] = {}

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            running: RunningServer = await nursery.start(serve, config)
            state.update(
                address=running.addresses["tcp"][0],
                scope=nursery.cancel_scope,
                token=trio.lowlevel.current_trio_token(),
            )
            started.set()

    thread = threading.Thread(target=trio.run, args=(run,), daemon=True)
    thread.start()
    assert started.wait(30), "the server did not start"
    try:
        yield connect(state["address"])
    finally:
        state["token"].run_sync_soon(state["scope"].cancel)
        thread.join(30)

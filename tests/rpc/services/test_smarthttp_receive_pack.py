"""SmartHTTPService PostReceivePack with real packs made by git pack-objects.

The request body is what `git push` over smart HTTP POSTs: commands, a flush, a pack;
the answer is receive-pack's side-band report. Each push runs the hooks.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from tests.helpers import Client, repository, storage_path
from tests.repos import GIT_ENV, FastImport, git, rich_repository
from tests.transport_helpers import fsck, quarantine_dirs, refs
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import smarthttp_pb2
from trio_gitaly.transport import pktline

RPC = "/gitaly.SmartHTTPService/PostReceivePack"
ZERO = "0" * 40
CAPABILITIES = "report-status side-band-64k agent=git/trio-gitaly-test"
USER = {"gl_id": "user-1", "gl_username": "alice", "gl_repository": "project-1"}


@pytest.fixture
def repo(config: Config) -> str:
    path = os.path.join(storage_path(config), "repo.git")
    rich_repository(path)
    return path


def rev(repo: str, revision: str) -> str:
    return git(repo, "rev-parse", revision).decode().strip()


def new_commit(repo: str, parent: str) -> tuple[str, bytes]:
    """A commit on top of `parent` made in a scratch clone; its id and a pack of it."""
    scratch = repo + ".scratch"
    if not os.path.exists(scratch):
        git(repo, "clone", "--quiet", "--bare", repo, scratch)
    build = FastImport()
    mark = build.commit(
        "refs/heads/scratch", b"Pushed\n", {b"pushed.txt": b"x\n"}, parents=[parent]
    )
    oid = build.run(scratch)[mark]
    pack = subprocess.run(
        ["git", "-C", scratch, "pack-objects", "--stdout", "--revs", "-q"],
        input=f"{oid}\n^{parent}\n".encode(),
        env=GIT_ENV,
        check=True,
        capture_output=True,
    ).stdout
    return oid, pack


def body(commands: list[tuple[str, str, str]], pack: bytes = b"") -> bytes:
    """A push request body: the commands (the first with capabilities), flush, pack."""
    lines = []
    for index, (old, new, ref) in enumerate(commands):
        line = f"{old} {new} {ref}" + (f"\0{CAPABILITIES}" if index == 0 else "") + "\n"
        lines.append(pktline.encode(line.encode()))
    return b"".join(lines) + pktline.flush() + pack


async def post(client: Client, data: bytes, **first: Any) -> bytes:
    """POST `data` (in 32 KiB messages); the response body."""
    requests = [smarthttp_pb2.PostReceivePackRequest(**{**USER, **first})]
    chunk = 32 * 1024
    requests += [
        smarthttp_pb2.PostReceivePackRequest(data=data[i : i + chunk])
        for i in range(0, len(data), chunk)
    ]
    responses = await client.stream(
        RPC, requests, smarthttp_pb2.PostReceivePackResponse, client_streaming=True
    )
    return b"".join(r.data for r in responses)


def report(response: bytes) -> list[str]:
    """receive-pack's report-status lines, out of side-band channel 1."""
    band1, rest = b"", response
    while rest and rest[:4] != b"0000":
        length = int(rest[:4], 16)
        if rest[4] == 1:
            band1 += rest[5:length]
        rest = rest[length:]
    lines, rest = [], band1
    while rest[:4] != b"0000":
        length = int(rest[:4], 16)
        lines.append(rest[4:length].decode().rstrip("\n"))
        rest = rest[length:]
    return lines


async def test_push_creates_updates_and_deletes(client: Client, repo: str) -> None:
    main = rev(repo, "main")
    oid, pack = new_commit(repo, main)
    data = body(
        [(ZERO, oid, "refs/heads/topic"), (main, oid, "refs/heads/main"),
         (rev(repo, "feature"), ZERO, "refs/heads/feature")],
        pack,
    )  # fmt: skip
    response = await post(client, data, repository=repository("repo.git"))
    assert report(response) == [
        "unpack ok", "ok refs/heads/topic", "ok refs/heads/main", "ok refs/heads/feature"
    ]  # fmt: skip
    assert rev(repo, "topic") == rev(repo, "main") == oid
    assert "refs/heads/feature" not in refs(repo)
    assert quarantine_dirs(repo) == []
    fsck(repo)


async def test_stale_old_value_is_refused(client: Client, repo: str) -> None:
    before = refs(repo)
    main = rev(repo, "main")
    oid, pack = new_commit(repo, main)
    stale = rev(repo, "main~1")
    response = await post(
        client, body([(stale, oid, "refs/heads/main")], pack), repository=repository("repo.git")
    )
    lines = report(response)
    assert lines[0] == "unpack ok"
    assert lines[1].startswith("ng refs/heads/main ")
    assert refs(repo) == before
    assert quarantine_dirs(repo) == []
    fsck(repo)


async def test_garbage_fails_the_call(client: Client, repo: str) -> None:
    before = refs(repo)
    requests = [
        smarthttp_pb2.PostReceivePackRequest(repository=repository("repo.git"), **USER),
        smarthttp_pb2.PostReceivePackRequest(data=b"garbage!"),
    ]
    error = await client.stream_error(
        RPC, requests, smarthttp_pb2.PostReceivePackResponse, client_streaming=True
    )
    assert (error.code().name, error.details()) == (
        "FAILED_PRECONDITION",
        "waiting for receive-pack: exit status 128",
    )
    assert refs(repo) == before


@pytest.mark.parametrize(
    ("first", "code", "message"),
    [
        ({"repository": repository("repo.git"), "gl_id": ""}, "INVALID_ARGUMENT", "empty GlId"),
        (
            {"repository": repository("repo.git"), "data": b"0000"},
            "INVALID_ARGUMENT",
            "non-empty Data",
        ),
        ({}, "INVALID_ARGUMENT", "repository not set"),
        ({"repository": repository("missing.git")}, "NOT_FOUND", "repository not found"),
        (
            {"repository": repository("repo.git"), "git_config_options": ["x"]},
            "INVALID_ARGUMENT",
            'cannot convert invalid config key: "x"',
        ),
    ],
)
async def test_bad_first_request(
    client: Client, repo: str, first: dict[str, Any], code: str, message: str
) -> None:
    request = smarthttp_pb2.PostReceivePackRequest(**{**USER, **first})
    error = await client.stream_error(
        RPC, [request], smarthttp_pb2.PostReceivePackResponse, client_streaming=True
    )
    assert (error.code().name, error.details()) == (code, message)

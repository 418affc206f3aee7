"""CommitService.TreeEntry over a real server, compared with `git ls-tree` / `git cat-file`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import grpc
import pytest
import trio
from hypothesis import HealthCheck, given, settings

from tests.helpers import Client
from tests.helpers import new_path as new_path
from tests.helpers import repository as repo
from tests.repos import SUBMODULE, FastImport, build_history, git, histories, rich_repository
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer, serve
from trio_gitaly.rpc.gen.gitaly import commit_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

SERVICE = "/gitaly.CommitService/"
CHUNK = 128 * 1024
FORMATS = ["sha1", "sha256"]
TYPES = {b"blob": pb.TreeEntryResponse.BLOB, b"tree": pb.TreeEntryResponse.TREE}


@asynccontextmanager
async def own_server(config: Config, connect: Callable[..., Client]) -> AsyncIterator[Client]:
    """A server of this block's own, and a client for it.

    For hypothesis tests: pytest-trio sets async fixtures up for the first example only
    and hands later examples the same, by then stopped, server.
    """
    async with trio.open_nursery() as nursery:
        running: RunningServer = await nursery.start(serve, config)
        try:
            yield connect(running.addresses["tcp"][0])
        finally:
            nursery.cancel_scope.cancel()


def ls_tree(path: str, revision: str, *flags: str) -> list[tuple[int, bytes, str, bytes]]:
    """`git ls-tree -z <flags> <revision>` as (mode, type, oid, path)."""
    out = git(path, "ls-tree", "-z", *flags, revision)
    entries = []
    for record in out.split(b"\0"):
        if record:
            meta, _, name = record.partition(b"\t")
            mode, kind, oid = meta.split(b" ")
            entries.append((int(mode, 8), kind, oid.decode(), name))
    return entries


async def tree_entry(client: Client, request: pb.TreeEntryRequest) -> list[pb.TreeEntryResponse]:
    responses: list[pb.TreeEntryResponse] = await client.stream(
        SERVICE + "TreeEntry", request, pb.TreeEntryResponse
    )
    assert responses, "TreeEntry always answers at least one message"
    for later in responses[1:]:
        # Metadata in the first message only; data in chunks of at most 128 KiB.
        assert (later.type, later.oid, later.size, later.mode) == (0, "", 0, 0)
        assert later.data
    assert all(len(r.data) <= CHUNK for r in responses)
    return responses


async def assert_entries_match_git(client: Client, path: str, name: str, revision: str) -> int:
    """Every entry of `revision` (recursively) through TreeEntry equals git's view of it."""
    checked = 0
    for mode, kind, oid, entry_path in ls_tree(path, revision, "-r", "-t"):
        request = pb.TreeEntryRequest(
            repository=repo(name), revision=revision.encode(), path=entry_path
        )
        responses = await tree_entry(client, request)
        first = responses[0]
        assert (first.oid, first.mode) == (oid, mode), entry_path
        if kind == b"commit":
            assert len(responses) == 1
            assert (first.type, first.size, first.data) == (pb.TreeEntryResponse.COMMIT, 0, b"")
        else:
            assert first.type == TYPES[kind]
            assert first.size == int(git(path, "cat-file", "-s", oid))
            data = b"".join(r.data for r in responses)
            assert data == (git(path, "cat-file", "blob", oid) if kind == b"blob" else b"")
            if kind == b"tree":
                assert len(responses) == 1
        checked += 1
    return checked


@pytest.mark.parametrize("object_format", FORMATS)
async def test_tree_entry_every_path_matches_git(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    # Symlink, executable, submodule gitlink, binary, non-UTF-8 names, nested trees.
    assert await assert_entries_match_git(client, path, "rich.git", "main") >= 13
    assert await assert_entries_match_git(client, path, "rich.git", "feature") >= 8


@pytest.mark.parametrize("object_format", FORMATS)
async def test_tree_entry_streams_the_large_blob_in_chunks(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    expected = git(path, "cat-file", "blob", "main:large.bin")
    assert len(expected) == 5 * 1024 * 1024
    request = pb.TreeEntryRequest(repository=repo("rich.git"), revision=b"main", path=b"large.bin")
    responses = await tree_entry(client, request)
    assert len(responses) == 40
    assert [len(r.data) for r in responses] == [CHUNK] * 40
    assert responses[0].size == len(expected)
    assert b"".join(r.data for r in responses) == expected

    # A limit cuts the data, not the reported size; max_size at or above the size passes.
    limited = await tree_entry(
        client,
        pb.TreeEntryRequest(
            repository=repo("rich.git"),
            revision=b"main",
            path=b"large.bin",
            limit=CHUNK + 7,
            max_size=len(expected),
        ),
    )
    assert [len(r.data) for r in limited] == [CHUNK, 7]
    assert limited[0].size == len(expected)
    assert b"".join(r.data for r in limited) == expected[: CHUNK + 7]


def odd_names_repository(path: str) -> None:
    """Names cat-file's line protocol cannot carry (CR, LF) and other odd ones."""
    build = FastImport()
    build.commit(
        "refs/heads/main",
        b"odd\n",
        {
            b"\r/x": b"1",
            b"a\r": b"2",
            b"x\ny/z": b"3",
            b"d\r/e/f": b"4",
            b"sp ace/q": b"5",
            b"caf\xe9/\xff": b"6",
        },
        parents=[],
    )
    build.run(path)


async def test_tree_entry_odd_names(client: Client, config: Config) -> None:
    path = new_path(config, "odd.git")
    odd_names_repository(path)
    assert await assert_entries_match_git(client, path, "odd.git", "main") == 12


async def test_tree_entry_cases_as_gitaly(client: Client, config: Config) -> None:
    """The cases of Gitaly's TestTreeEntry, answers checked against git."""
    path = new_path(config, "t.git")
    build = FastImport()
    build.commit(
        "refs/heads/branch",
        b"files\n",
        {
            b"blob": b"1234567890",
            b"blob with spaces": b"space",
            b"submodule": (SUBMODULE, "a" * 40),
            b"subtree/subfile": b"subfile content",
        },
        parents=[],
    )
    build.run(path)
    commit = git(path, "rev-parse", "branch").decode().strip()
    subtree = git(path, "rev-parse", "branch:subtree").decode().strip()

    async def entry(entry_path: bytes, **kw: int) -> list[pb.TreeEntryResponse]:
        request = pb.TreeEntryRequest(
            repository=repo("t.git"), revision=commit.encode(), path=entry_path, **kw
        )
        return await tree_entry(client, request)

    blob = await entry(b"blob")
    assert blob == [
        pb.TreeEntryResponse(
            type=pb.TreeEntryResponse.BLOB,
            oid=git(path, "rev-parse", "branch:blob").decode().strip(),
            size=10,
            mode=0o100644,
            data=b"1234567890",
        )
    ]
    assert (await entry(b"blob", limit=20))[0].data == b"1234567890"
    assert (await entry(b"blob", max_size=20))[0].data == b"1234567890"
    assert (await entry(b"blob", max_size=10))[0].data == b"1234567890"
    assert (await entry(b"blob", limit=5))[0].data == b"12345"
    assert (await entry(b"blob", limit=5))[0].size == 10
    assert (await entry(b"blob with spaces"))[0].data == b"space"
    assert await entry(b"submodule") == [
        pb.TreeEntryResponse(type=pb.TreeEntryResponse.COMMIT, oid="a" * 40, mode=0o160000)
    ]
    tree = pb.TreeEntryResponse(
        type=pb.TreeEntryResponse.TREE,
        oid=subtree,
        size=int(git(path, "cat-file", "-s", subtree)),
        mode=0o40000,
    )
    assert await entry(b"subtree") == [tree]
    assert await entry(b"subtree/") == [tree]
    assert await entry(b"subtree//") == [tree]
    assert (await entry(b"subtree/subfile"))[0].data == b"subfile content"


async def test_tree_entry_errors(client: Client, config: Config) -> None:
    path = new_path(config, "e.git")
    rich_repository(path)
    good = {"repository": repo("e.git"), "revision": b"main", "path": b"README.md"}

    cases: list[tuple[dict[str, object], grpc.StatusCode, str]] = [
        ({**good, "repository": None}, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (
            {**good, "repository": shared_pb2.Repository(storage_name="fake", relative_path="p")},
            grpc.StatusCode.INVALID_ARGUMENT,
            "storage name not found",
        ),
        (
            {**good, "repository": repo("nope.git")},
            grpc.StatusCode.NOT_FOUND,
            "repository not found",
        ),
        ({**good, "revision": b""}, grpc.StatusCode.INVALID_ARGUMENT, "empty revision"),
        ({**good, "path": b""}, grpc.StatusCode.INVALID_ARGUMENT, "empty Path"),
        (
            {**good, "revision": b"--output=/meow"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "revision can't start with '-'",
        ),
        ({**good, "limit": -1}, grpc.StatusCode.INVALID_ARGUMENT, "negative Limit"),
        ({**good, "max_size": -1}, grpc.StatusCode.INVALID_ARGUMENT, "negative MaxSize"),
        (
            {**good, "max_size": 5},
            grpc.StatusCode.FAILED_PRECONDITION,
            "object size (9) is bigger than the maximum allowed size (5)",
        ),
        (
            {**good, "path": b"large.bin", "max_size": 1024},
            grpc.StatusCode.FAILED_PRECONDITION,
            "object size (5242880) is bigger than the maximum allowed size (1024)",
        ),
    ]
    not_found = [
        b"../bar/.gitkeep",
        b"..",
        b"../x",
        b"with space/README.md",
        b"missing.rb",
        b"README.md/x",
        b"vendor/lib/inside",
        b"/README.md",
        b"/",
        b"//",
        b".",
        b"docs/./manual.md",
        b"docs\nmanual.md",
        b"README.md\0",
        b"large.bin/x",
        # The directory part is cleaned (Go's path.Dir) but the whole path must equal
        # the entry's joined path exactly.
        b"./README.md",
        b"docs//manual.md",
    ]
    cases += [
        ({**good, "path": p}, grpc.StatusCode.NOT_FOUND, "tree entry not found") for p in not_found
    ]
    cases += [
        ({**good, "revision": rev}, grpc.StatusCode.NOT_FOUND, "tree entry not found")
        for rev in (b"does-not-exist", b"1" * 40, b"main~100", b"v1.0.0^{blob}")
    ]
    for fields, code, message in cases:
        request = pb.TreeEntryRequest(**fields)  # type: ignore[arg-type]
        error = await client.stream_error(SERVICE + "TreeEntry", request, pb.TreeEntryResponse)
        assert (error.code(), error.details()) == (code, message), fields


async def test_tree_entry_through_tags_and_tree_ids(client: Client, config: Config) -> None:
    path = new_path(config, "tags.git")
    rich_repository(path)
    tree = git(path, "rev-parse", "main^{tree}").decode().strip()
    for revision in (b"v1.0.0", b"v1.0.0-nested", b"lightweight", tree.encode(), b"HEAD"):
        responses = await tree_entry(
            client,
            pb.TreeEntryRequest(repository=repo("tags.git"), revision=revision, path=b"README.md"),
        )
        assert responses[0].data == git(path, "cat-file", "blob", revision.decode() + ":README.md")


@given(history=histories(max_commits=4))
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_tree_entry_random_histories(
    config: Config,
    connect: Callable[..., Client],
    history: list,  # type: ignore[type-arg]
) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = new_path(config, name)
    commits = build_history(path, history)
    async with own_server(config, connect) as client:
        for oid in set(commits.values()):
            await assert_entries_match_git(client, path, name, oid)

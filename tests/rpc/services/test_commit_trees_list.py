"""CommitService.GetTreeEntries over a real server, compared with `git ls-tree`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from tests.helpers import Client, error_detail
from tests.repos import SUBMODULE, FastImport, build_history, git, histories, rich_repository
from tests.rpc.services.test_commit_trees_entry import (
    ls_tree,
    new_path,
    odd_names_repository,
    own_server,
    repo,
)
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import commit_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import errors_pb2, shared_pb2

SERVICE = "/gitaly.CommitService/"
FORMATS = ["sha1", "sha256"]
ENTRY_TYPES = {
    b"blob": pb.TreeEntry.BLOB,
    b"tree": pb.TreeEntry.TREE,
    b"commit": pb.TreeEntry.COMMIT,
}
RANK = {pb.TreeEntry.TREE: 1, pb.TreeEntry.BLOB: 2, pb.TreeEntry.COMMIT: 3}


def request(name: str, revision: bytes, path: bytes, **kw: Any) -> pb.GetTreeEntriesRequest:
    return pb.GetTreeEntriesRequest(repository=repo(name), revision=revision, path=path, **kw)


async def get_entries(
    client: Client, req: pb.GetTreeEntriesRequest
) -> tuple[list[pb.TreeEntry], shared_pb2.PaginationCursor | None]:
    """All entries and the cursor (present in the first message only, as Gitaly sends it)."""
    responses: list[pb.GetTreeEntriesResponse] = await client.stream(
        SERVICE + "GetTreeEntries", req, pb.GetTreeEntriesResponse
    )
    entries: list[pb.TreeEntry] = []
    for index, response in enumerate(responses):
        assert response.entries, "no empty messages"
        assert_message_budget(response)
        assert response.HasField("pagination_cursor") == (index == 0)
        entries.extend(response.entries)
    return entries, responses[0].pagination_cursor if responses else None


def assert_message_budget(response: pb.GetTreeEntriesResponse) -> None:
    """Gitaly's chunker rule: the entries of one message add up to less than 1 MiB."""
    assert sum(entry.ByteSize() for entry in response.entries) < 1024 * 1024
    assert response.ByteSize() < 1024 * 1024 + 4 * len(response.entries)


def reference_flat_path(path: str, revision: str, entry_path: bytes) -> bytes:
    """Gitaly's flat path, computed with `git ls-tree` at most 9 levels down."""
    flat = entry_path
    for _ in range(1, 10):
        children = ls_tree(path, f"{revision}:{os.fsdecode(flat)}")
        if len(children) != 1 or children[0][1] != b"tree":
            break
        flat = flat + b"/" + children[0][3]
    return flat


def expected_entries(
    path: str, revision: str, tree_path: bytes, *, recursive: bool, flat: bool
) -> list[pb.TreeEntry]:
    """What GetTreeEntries must answer, from `git ls-tree` of revision:tree_path."""
    flags = ("-r", "-t") if recursive else ()
    listed = ls_tree(path, f"{revision}:{os.fsdecode(tree_path)}", *flags)
    prefix = b"" if tree_path in (b"", b".") else tree_path.rstrip(b"/") + b"/"
    entries = []
    for mode, kind, oid, name in listed:
        entry = pb.TreeEntry(
            oid=oid, path=prefix + name, type=ENTRY_TYPES[kind], mode=mode, commit_oid=revision
        )
        if flat:
            entry.flat_path = (
                reference_flat_path(path, revision, entry.path) if kind == b"tree" else entry.path
            )
        entries.append(entry)
    return entries


async def assert_listing_matches_git(client: Client, path: str, name: str, revision: str) -> None:
    """Recursive and flat listings of the root and of every subtree equal git's."""
    trees = [b""] + [p for _, kind, _, p in ls_tree(path, revision, "-r", "-t") if kind == b"tree"]
    for tree_path in trees:
        req_path = tree_path or b"."
        flat, cursor = await get_entries(client, request(name, revision.encode(), req_path))
        assert flat == expected_entries(path, revision, tree_path, recursive=False, flat=True)
        if flat:
            assert cursor == shared_pb2.PaginationCursor(next_cursor="")
        recursive, _ = await get_entries(
            client, request(name, revision.encode(), req_path, recursive=True)
        )
        assert recursive == expected_entries(path, revision, tree_path, recursive=True, flat=False)
        skipped, _ = await get_entries(
            client, request(name, revision.encode(), req_path, skip_flat_paths=True)
        )
        assert skipped == expected_entries(path, revision, tree_path, recursive=False, flat=False)


@pytest.mark.parametrize("object_format", FORMATS)
async def test_get_tree_entries_match_git(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    for revision in ("main", "feature", "v1.0.0", "lightweight"):
        await assert_listing_matches_git(client, path, "rich.git", revision)
    # Trailing slashes and "." name the same tree; paths are joined as Go's filepath.Join.
    by_slash, _ = await get_entries(client, request("rich.git", b"main", b"docs/"))
    assert [e.path for e in by_slash] == [b"docs/manual.md"]
    by_dot, _ = await get_entries(client, request("rich.git", b"main", b".", recursive=True))
    assert by_dot == expected_entries(path, "main", b"", recursive=True, flat=False)


async def test_get_tree_entries_odd_names(client: Client, config: Config) -> None:
    path = new_path(config, "odd.git")
    odd_names_repository(path)
    await assert_listing_matches_git(client, path, "odd.git", "main")


def nested_repository(path: str) -> str:
    """Gitaly's flat path fixtures: bar/folder2/folder3/test2.txt, foo/folder/test.txt, and
    a chain of 13 single directories 0/1/.../12/.gitkeep; returns the commit id."""
    build = FastImport()
    deep = b"/".join(str(i).encode() for i in range(13)) + b"/.gitkeep"
    build.commit(
        "refs/heads/main",
        b"nested\n",
        {
            b"bar/folder2/folder3/test2.txt": b"test2",
            b"foo/folder/test.txt": b"test",
            b"top.txt": b"top",
            deep: b"something",
            b"a..b/test.txt": b"dots",
            b"issue-46261/folder/test1.txt": b"test1",
            b"issue-46261/{{curly}}/test2.txt": b"test2",
            b"sub": (SUBMODULE, "1" * 40),
        },
        parents=[],
    )
    build.run(path)
    return git(path, "rev-parse", "main").decode().strip()


async def test_get_tree_entries_flat_paths_as_gitaly(client: Client, config: Config) -> None:
    path = new_path(config, "n.git")
    commit = nested_repository(path)
    entries, _ = await get_entries(client, request("n.git", commit.encode(), b"."))
    flat = {e.path: e.flat_path for e in entries}
    assert flat == {
        b"0": b"0/1/2/3/4/5/6/7/8/9",
        b"a..b": b"a..b",
        b"bar": b"bar/folder2/folder3",
        b"foo": b"foo/folder",
        b"issue-46261": b"issue-46261",
        b"sub": b"sub",
        b"top.txt": b"top.txt",
    }
    # Gitaly's "deeply nested flat path" case: recursion stops after ten levels.
    entries, _ = await get_entries(client, request("n.git", commit.encode(), b"0"))
    assert [(e.path, e.flat_path) for e in entries] == [(b"0/1", b"0/1/2/3/4/5/6/7/8/9/10")]
    assert all(e.commit_oid == commit for e in entries)
    for curly in (b"issue-46261/folder", b"issue-46261/{{curly}}", b"a..b"):
        entries, _ = await get_entries(client, request("n.git", commit.encode(), curly))
        assert [e.path for e in entries] == [
            curly + b"/" + e.path.rsplit(b"/", 1)[1] for e in entries
        ]
        assert len(entries) == 1 and entries[0].flat_path == entries[0].path


async def test_get_tree_entries_sorted_trees_first(client: Client, config: Config) -> None:
    path = new_path(config, "n.git")
    nested_repository(path)
    for recursive in (False, True):
        entries, _ = await get_entries(
            client,
            request(
                "n.git",
                b"main",
                b".",
                recursive=recursive,
                sort=pb.GetTreeEntriesRequest.TREES_FIRST,
            ),
        )
        expected = expected_entries(path, "main", b"", recursive=recursive, flat=not recursive)
        assert entries == sorted(expected, key=lambda e: RANK[e.type])


async def test_get_tree_entries_splits_large_listings(client: Client, config: Config) -> None:
    path = new_path(config, "big.git")
    build = FastImport()
    names = {b"d/" + b"f" * 150 + b"%05d" % i: b"x" for i in range(8000)}
    build.commit("refs/heads/main", b"many\n", names, parents=[])
    build.run(path)
    responses = await client.stream(
        SERVICE + "GetTreeEntries", request("big.git", b"main", b"d"), pb.GetTreeEntriesResponse
    )
    assert len(responses) >= 2
    for response in responses:
        assert_message_budget(response)
    assert [e.path for r in responses for e in r.entries] == sorted(names)
    recursive, _ = await get_entries(client, request("big.git", b"main", b".", recursive=True))
    assert len(recursive) == 8001


async def test_get_tree_entries_errors(client: Client, config: Config) -> None:
    path = new_path(config, "e.git")
    commits = rich_repository(path)
    build = FastImport()
    # A gitlink to a commit that is in the repository: it resolves, but not to a tree.
    build.commit(
        "refs/heads/linked", b"link\n", {b"self": (SUBMODULE, commits["root"])}, parents=[]
    )
    build.run(path)
    main = commits["submodule"].encode()

    def resolve(code: grpc.StatusCode, message: str, revision: bytes = main) -> tuple[Any, ...]:
        detail = pb.GetTreeEntriesError(
            resolve_tree=errors_pb2.ResolveRevisionError(revision=revision)
        )
        return code, message, detail

    empty_path = pb.GetTreeEntriesError(
        path=errors_pb2.PathError(error_type=errors_pb2.PathError.ERROR_TYPE_EMPTY_PATH)
    )
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    cases: list[tuple[pb.GetTreeEntriesRequest, tuple[Any, ...]]] = [
        (pb.GetTreeEntriesRequest(revision=main, path=b"."), (invalid, "repository not set", None)),
        (
            pb.GetTreeEntriesRequest(
                repository=shared_pb2.Repository(storage_name="fake", relative_path="p"),
                revision=main,
                path=b".",
            ),
            (invalid, "storage name not found", None),
        ),
        (request("e.git", b"", b"."), (invalid, "empty revision", None)),
        (
            request("e.git", b"--output=/meow", b"."),
            (invalid, "revision can't start with '-'", None),
        ),
        (request("e.git", main, b""), (invalid, "empty path", empty_path)),
        (request("e.git", main, b"README.md"), resolve(invalid, "path not treeish")),
        (
            request("e.git", main, b"README.md", recursive=True),
            resolve(invalid, "path not treeish"),
        ),
        (request("e.git", main, b"./.."), resolve(invalid, "invalid revision or path")),
        (request("e.git", main, b"./docs/.."), resolve(invalid, "invalid revision or path")),
        (request("e.git", main, b"./docs/manual.md"), resolve(invalid, "invalid revision or path")),
        (
            request("e.git", main, path.encode() + b"docs"),
            resolve(invalid, "invalid revision or path"),
        ),
        (request("e.git", main, b"does-not-exist"), resolve(invalid, "invalid revision or path")),
        (
            request("e.git", main, b"does-not-exist", recursive=True),
            resolve(grpc.StatusCode.NOT_FOUND, "invalid revision or path"),
        ),
        (
            request("e.git", b"does-not-exist", b"."),
            resolve(invalid, "invalid revision or path", b"does-not-exist"),
        ),
        (
            request("e.git", b"does-not-exist", b".", recursive=True),
            resolve(grpc.StatusCode.NOT_FOUND, "invalid revision or path", b"does-not-exist"),
        ),
        (
            request("e.git", main, b"vendor/lib"),
            resolve(grpc.StatusCode.NOT_FOUND, "revision doesn't exist"),
        ),
        (request("e.git", main, b"vendor/lib/foo"), resolve(invalid, "invalid revision or path")),
        (request("e.git", main, b"docs\nmanual"), resolve(invalid, "invalid revision or path")),
        (request("e.git", b"linked", b"self"), resolve(invalid, "path not treeish", b"linked")),
        (
            request(
                "e.git",
                main,
                b".",
                pagination_params=shared_pb2.PaginationParameter(page_token="non-existent"),
            ),
            (grpc.StatusCode.INTERNAL, "could not find starting OID: non-existent", None),
        ),
    ]
    for req, (code, message, detail) in cases:
        error = await client.stream_error(
            SERVICE + "GetTreeEntries", req, pb.GetTreeEntriesResponse
        )
        assert (error.code(), error.details()) == (code, message), req
        if detail is not None:
            assert error_detail(error, pb.GetTreeEntriesError) == detail


async def test_get_tree_entries_empty_tree(client: Client, config: Config) -> None:
    path = new_path(config, "empty.git")
    build = FastImport()
    build.commit("refs/heads/main", b"empty\n", {}, parents=[])
    build.run(path)
    for recursive in (False, True):
        responses = await client.stream(
            SERVICE + "GetTreeEntries",
            request("empty.git", b"main", b".", recursive=recursive),
            pb.GetTreeEntriesResponse,
        )
        assert responses == []


@given(history=histories(max_commits=4))
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_get_tree_entries_random_histories(
    config: Config,
    connect: Callable[..., Client],
    history: list,  # type: ignore[type-arg]
) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = new_path(config, name)
    commits = build_history(path, history)
    async with own_server(config, connect) as client:
        for oid in set(commits.values()):
            await assert_listing_matches_git(client, path, name, oid)

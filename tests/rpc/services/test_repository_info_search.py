"""RepositoryService SearchFilesByName against `git ls-tree`, and upstream's cases.

The reference answer is `git ls-tree --full-tree --name-only -r -z <ref> -- <query>`,
filtered with Python's `re` (for filters whose meaning is the same in Go and Python),
then paginated the way Gitaly does (skip `offset` matches, stop after `limit` > 0).
"""

from __future__ import annotations

import os
import re

import grpc
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Client
from tests.helpers import new_path as new_path
from tests.helpers import repository as repo
from tests.helpers import running_client as running_client
from tests.repos import FastImport, build_history, git, histories, rich_repository
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import repository_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2
from trio_gitaly.rpc.streaming import MESSAGE_BUDGET_BYTES

SERVICE = "/gitaly.RepositoryService/"
FORMATS = ["sha1", "sha256"]
History = list[tuple[str, bytes, dict[bytes, bytes | None], int | None]]


async def search(client: Client, name: str, **fields: object) -> list[bytes]:
    request = pb.SearchFilesByNameRequest(repository=repo(name), **fields)  # type: ignore[arg-type]
    responses = await client.stream(
        SERVICE + "SearchFilesByName", request, pb.SearchFilesByNameResponse
    )
    assert responses, "at least one message, as Gitaly sends"
    assert all(r.ByteSize() < MESSAGE_BUDGET_BYTES + 1024 for r in responses)
    return [path for response in responses for path in response.files]


def expected(
    path: str, ref: str, query: str, pattern: str = "", offset: int = 0, limit: int = 0
) -> list[bytes]:
    """The answer from git ls-tree, filtered with Python's re and paginated as Gitaly."""
    listing = git(path, "ls-tree", "--full-tree", "--name-only", "-r", "-z", ref, "--", query)
    paths = listing.split(b"\0")[:-1]
    if pattern:
        compiled = re.compile(pattern.encode())
        paths = [p for p in paths if compiled.search(p)]
    paths = paths[offset:]
    return paths[:limit] if limit > 0 else paths


async def search_errors(
    client: Client, request: pb.SearchFilesByNameRequest
) -> tuple[grpc.StatusCode, str]:
    error = await client.stream_error(
        SERVICE + "SearchFilesByName", request, pb.SearchFilesByNameResponse
    )
    return error.code(), error.details()


def upstream_repository(path: str, object_format: str = "sha1") -> dict[str, str]:
    """search_files_test.go's commits: a small tree, unusual names, pagination, a dash."""
    build = FastImport(object_format=object_format)
    files = {b"a": b"a", b"b": b"b", b"dir/c.svg": b"c", b"dir/d.txt": b"d"}
    build.commit("refs/heads/branch", b"branch\n", files, parents=[])
    unusual = build.commit(
        "refs/heads/unusual",
        b"unusual\n",
        {
            b'"file with quote.txt': b"something",
            b".vimrc": b"something",
            "cuộc đời là những chuyến đi.md".encode(): b"something",
            "编码 'foo'.md".encode(): b"something",
        },
        parents=[],
    )
    pages = {f"file{i}.md".encode(): b"x" for i in range(1, 6)}
    pages |= {f"new_file{i}.md".encode(): b"y" for i in range(1, 4)}
    pagination = build.commit("refs/heads/pages", b"pages\n", pages, parents=[])
    dashed = build.commit("refs/heads/dashed", b"dash\n", {b"-dashed": b"-dashed\n"}, parents=[])
    marks = build.run(path)
    return {"unusual": marks[unusual], "pages": marks[pagination], "dashed": marks[dashed]}


@pytest.mark.parametrize("object_format", FORMATS)
async def test_search_files_by_name_upstream_cases(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "s.git")
    oids = upstream_repository(path, object_format)
    unusual, pages, dashed = oids["unusual"], oids["pages"], oids["dashed"]
    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"ref": b"branch", "query": "dir/c.svg"}, ["dir/c.svg"]),
        ({"ref": b"branch", "query": "dir"}, ["dir/c.svg", "dir/d.txt"]),
        ({"ref": b"branch", "query": "dir", "filter": r"\.svg$"}, ["dir/c.svg"]),
        ({"ref": b"non_existent_ref", "query": "."}, []),
        ({"ref": unusual.encode(), "query": '"file with quote.txt'}, ['"file with quote.txt']),
        ({"ref": unusual.encode(), "query": ".vimrc"}, [".vimrc"]),
        (
            {"ref": unusual.encode(), "query": "cuộc đời là những chuyến đi.md"},
            ["cuộc đời là những chuyến đi.md"],
        ),
        ({"ref": unusual.encode(), "query": "编码 'foo'.md"}, ["编码 'foo'.md"]),
        ({"ref": unusual.encode(), "query": ".", "filter": '^"file.*'}, ['"file with quote.txt']),
        ({"ref": unusual.encode(), "query": ".", "filter": "^\\..*"}, [".vimrc"]),
        (
            {"ref": unusual.encode(), "query": ".", "filter": "cuộc đời .*\\.md"},
            ["cuộc đời là những chuyến đi.md"],
        ),
        (
            {"ref": unusual.encode(), "query": ".", "filter": "编码 'foo'\\.(md|txt|rdoc)"},
            ["编码 'foo'.md"],
        ),
        (
            {"ref": unusual.encode(), "query": ".", "filter": ".*"},
            ['"file with quote.txt', ".vimrc", "cuộc đời là những chuyến đi.md", "编码 'foo'.md"],
        ),
        ({"ref": pages.encode(), "query": ".", "limit": 3}, ["file1.md", "file2.md", "file3.md"]),
        (
            {"ref": pages.encode(), "query": ".", "offset": 2},
            ["file3.md", "file4.md", "file5.md", "new_file1.md", "new_file2.md", "new_file3.md"],
        ),
        ({"ref": pages.encode(), "query": ".", "offset": 2, "limit": 2}, ["file3.md", "file4.md"]),
        ({"ref": pages.encode(), "query": ".", "offset": 8}, []),
        (
            {"ref": pages.encode(), "query": ".", "offset": 6, "limit": 5},
            ["new_file2.md", "new_file3.md"],
        ),
        (
            {"ref": pages.encode(), "query": ".", "filter": "new.*", "offset": 1, "limit": 2},
            ["new_file2.md", "new_file3.md"],
        ),
        (
            {
                "ref": pages.encode(),
                "query": ".",
                "filter": "not_matched.*",
                "offset": 1,
                "limit": 2,
            },
            [],
        ),
        ({"ref": pages.encode(), "query": "new_file2.md", "limit": 2}, ["new_file2.md"]),
        ({"ref": dashed.encode(), "query": "-dashed"}, ["-dashed"]),
        # offset and limit are uint32: a huge offset is just past the end.
        ({"ref": b"branch", "query": ".", "offset": 2**32 - 1}, []),
    ]
    for fields, files in cases:
        assert await search(client, "s.git", **fields) == [f.encode() for f in files], fields


@pytest.mark.parametrize("object_format", FORMATS)
async def test_search_files_by_name_matches_ls_tree(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    oids = rich_repository(path, object_format)
    refs = ["main", "v1.0.0", oids["latin1"], "main~2"]
    queries = [".", "docs", "bin/tool", "vendor", "caf\xe9.txt", "*.md"]
    # Filters that mean the same in Go and Python: the reference answer uses Python's re.
    filters = ["", r"\.md$", "^docs/", "(?i)README", "[^/]+/[^/]+", "^$"]
    for ref in refs:
        for query in queries:
            for pattern in filters:
                got = await search(
                    client, "rich.git", ref=ref.encode(), query=query, filter=pattern
                )
                assert got == expected(path, ref, query, pattern), (ref, query, pattern)


async def test_search_files_by_name_non_utf8_paths(client: Client, config: Config) -> None:
    """Paths are bytes; Go's regexp sees each invalid UTF-8 byte as one U+FFFD rune."""
    path = new_path(config, "rich.git")
    rich_repository(path)
    everything = await search(client, "rich.git", ref=b"main", query=".")
    assert b"caf\xe9.txt" in everything
    assert await search(client, "rich.git", ref=b"main", query=".", filter="^caf.\\.txt$") == [
        b"caf\xe9.txt"
    ]
    assert await search(client, "rich.git", ref=b"main", query=".", filter="^caf\ufffd") == [
        b"caf\xe9.txt"
    ]
    assert await search(client, "rich.git", ref=b"main", query=".", filter="^\u2713 ") == [
        "\u2713 check.txt".encode()
    ]


async def test_search_files_by_name_linear_time_filter(client: Client, config: Config) -> None:
    """A filter that makes a backtracking engine explode is answered at once."""
    path = new_path(config, "long.git")
    build = FastImport()
    name = b"a" * 200 + b"/" + b"a" * 200
    build.commit("refs/heads/main", b"long\n", {name: b"x", b"ab": b"y"}, parents=[])
    build.run(path)
    with trio.fail_after(5):
        got = await search(client, "long.git", ref=b"main", query=".", filter="^(a|aa)*$")
    assert got == []
    got = await search(client, "long.git", ref=b"main", query=".", filter="(a*)*b$")
    assert got == [b"ab"]


async def test_search_files_by_name_many_files_in_bounded_messages(
    client: Client, config: Config
) -> None:
    path = new_path(config, "many.git")
    build = FastImport()
    files = {f"{'d' * 150}/{i:05d}-{'f' * 100}".encode(): b"" for i in range(5000)}
    build.commit("refs/heads/main", b"many\n", files, parents=[])
    build.run(path)
    request = pb.SearchFilesByNameRequest(repository=repo("many.git"), ref=b"main", query=".")
    responses = await client.stream(
        SERVICE + "SearchFilesByName", request, pb.SearchFilesByNameResponse
    )
    assert len(responses) > 1
    assert all(r.ByteSize() < MESSAGE_BUDGET_BYTES for r in responses)
    assert [p for r in responses for p in r.files] == sorted(files)
    # With a limit, git is stopped early: the answer is the first `limit` paths.
    assert (
        await search(client, "many.git", ref=b"main", query=".", limit=7, offset=4990)
        == (sorted(files)[4990:4997])
    )


async def test_search_files_by_name_errors(client: Client, config: Config) -> None:
    path = new_path(config, "s.git")
    upstream_repository(path)
    ok = {"repository": repo("s.git"), "query": "foo", "ref": b"branch"}
    cases: list[tuple[dict[str, object], grpc.StatusCode, str]] = [
        (
            {"repository": shared_pb2.Repository()},
            grpc.StatusCode.INVALID_ARGUMENT,
            "repository not set",
        ),
        ({**ok, "repository": None}, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (
            {**ok, "repository": repo("x", "fake")},
            grpc.StatusCode.INVALID_ARGUMENT,
            "storage name not found",
        ),
        (
            {**ok, "repository": repo("missing.git")},
            grpc.StatusCode.NOT_FOUND,
            "repository not found",
        ),
        ({"repository": repo("s.git")}, grpc.StatusCode.INVALID_ARGUMENT, "no query given"),
        (
            {"repository": repo("s.git"), "query": "foo"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "no ref given",
        ),
        (
            {**ok, "ref": b"--output=/tmp/x"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid ref argument",
        ),
        (
            {**ok, "filter": "+*."},
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter did not compile: error parsing regexp: no argument for repetition operator: +",
        ),
        (
            {**ok, "filter": "." * 1001},
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter exceeds maximum length",
        ),
        (
            # 501 characters but 1001 bytes: the limit counts bytes.
            {**ok, "filter": "é" * 500 + "("},
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter exceeds maximum length",
        ),
        (
            {**ok, "filter": "(?<!x)y"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "filter did not compile: error parsing regexp: invalid perl operator: (?<!",
        ),
    ]
    for fields, code, message in cases:
        request = pb.SearchFilesByNameRequest(**fields)  # type: ignore[arg-type]
        assert await search_errors(client, request) == (code, message), fields
    # The longest filter accepted.
    assert await search(client, "s.git", query=".", ref=b"branch", filter="a" * 1000) == []


@given(
    history=histories(max_commits=4),
    query=st.sampled_from([".", "a", "b/", "\xe9"]),
    offset=st.integers(0, 6),
    limit=st.integers(0, 6),
    pattern=st.sampled_from(["", "a", "^[a-z]", "/", r"\.", "[^\x00-\x7f]"]),
)
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_search_files_by_name_random_histories(
    config: Config, history: History, query: str, offset: int, limit: int, pattern: str
) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = new_path(config, name)
    commits = build_history(path, history)
    oid = commits[len(commits) - 1]
    async with running_client(config) as client:
        got = await search(
            client, name, ref=oid.encode(), query=query, filter=pattern, offset=offset, limit=limit
        )
    # Python's bytes regexps see bytes, not runes: compare only where that cannot matter.
    if pattern == "[^\x00-\x7f]":
        reference = [p for p in expected(path, oid, query) if any(b >= 0x80 for b in p)]
        reference = reference[offset:]
        reference = reference[:limit] if limit > 0 else reference
    else:
        reference = expected(path, oid, query, pattern, offset, limit)
    assert got == reference

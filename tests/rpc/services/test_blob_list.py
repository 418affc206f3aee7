"""BlobService.ListBlobs and ListAllBlobs, compared with `git rev-list --objects` and
`git cat-file --batch-all-objects`; quarantine directories; chunking and batching."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from tests.helpers import Client
from tests.helpers import new_path as new_path
from tests.helpers import repository as repo
from tests.helpers import running_client as running_client
from tests.repos import GIT_ENV, build_history, git, histories, rich_repository
from trio_gitaly.config import Config
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.gen.gitaly import blob_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

SERVICE = "/gitaly.BlobService/"
CHUNK = 128 * 1024
MESSAGE_BUDGET = 1024 * 1024
FORMATS = ["sha1", "sha256"]
WALK_FLAGS = ["--in-commit-order", "--objects", "--object-names", "--filter=object:type=blob",
              "--filter-provided-objects"]  # fmt: skip
History = list[tuple[str, bytes, dict[bytes, bytes | None], int | None]]


def sizes(path: str, oids: Sequence[str]) -> dict[str, int]:
    if not oids:
        return {}
    out = git(path, "cat-file", "--batch-check", input="".join(f"{o}\n" for o in oids).encode())
    return {line.split()[0]: int(line.split()[2]) for line in out.decode().splitlines()}


def cat_objects(path: str, oids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    """type and content of each object, from one `git cat-file --batch`."""
    out = git(path, "cat-file", "--batch", input="".join(f"{oid}\n" for oid in oids).encode())
    objects: dict[str, tuple[str, bytes]] = {}
    pos = 0
    while pos < len(out):
        end = out.index(b"\n", pos)
        oid, kind, size = out[pos:end].decode().split()
        start = end + 1
        objects[oid] = (kind, out[start : start + int(size)])
        pos = start + int(size) + 1
    return objects


def reference_walk(path: str, revisions: Sequence[str]) -> list[tuple[str, bytes]]:
    """(oid, path) of each blob, in rev-list's order, as git prints them."""
    out = git(path, "rev-list", *WALK_FLAGS, *revisions)
    listed = []
    for line in out.split(b"\n"):
        if line:
            oid, _, name = line.partition(b" ")
            listed.append((oid.decode(), name))
    return listed


def merge_items(items: Sequence[Any], *, with_paths: bool = False) -> list[Any]:
    """Fold each blob's data items into its header item, checking the chunk rules."""
    merged: list[Any] = []
    for item in items:
        assert len(item.data) <= CHUNK
        if item.oid:
            merged.append(item)
            continue
        # A continuation: data only (and the path with with_paths), never empty.
        assert item.size == 0 and item.data
        if with_paths:
            assert item.path == merged[-1].path
        merged[-1].data += item.data
    return merged


async def list_blobs(client: Client, **fields: Any) -> list[pb.ListBlobsResponse.Blob]:
    responses = await client.stream(
        SERVICE + "ListBlobs", pb.ListBlobsRequest(**fields), pb.ListBlobsResponse
    )
    assert all(r.blobs for r in responses)
    assert all(r.ByteSize() <= MESSAGE_BUDGET + 1024 for r in responses)
    return [blob for response in responses for blob in response.blobs]


async def list_all_blobs(client: Client, **fields: Any) -> list[pb.ListAllBlobsResponse.Blob]:
    responses = await client.stream(
        SERVICE + "ListAllBlobs", pb.ListAllBlobsRequest(**fields), pb.ListAllBlobsResponse
    )
    assert all(r.blobs for r in responses)
    assert all(r.ByteSize() <= MESSAGE_BUDGET + 1024 for r in responses)
    return [blob for response in responses for blob in response.blobs]


# -- ListBlobs -------------------------------------------------------------------------

WALKS = [
    ["--all"],
    ["main"],
    ["feature"],
    ["main", "--not", "feature"],
    ["--all", "--not", "main"],
    ["main", "--not", "--all"],
    ["feature", "^main"],
    ["main~3..main"],
    ["--branches", "--tags"],
    ["--tags=v1*"],
    ["--glob=refs/heads/*"],
    ["main:docs/manual.md"],
    ["main^{tree}"],
    ["main:docs", "main:README.md", "main:README.md"],
    ["v1.0.0"],
    ["blob-tag"],
]


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_blobs_matches_rev_list(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    for revisions in WALKS:
        expected = reference_walk(path, revisions)
        size = sizes(path, [oid for oid, _ in expected])
        for with_paths in (False, True):
            blobs = await list_blobs(
                client, repository=repo("rich.git"), revisions=revisions, with_paths=with_paths
            )
            assert [(b.oid, b.size, b.path, b.data) for b in blobs] == [
                (oid, size[oid], name if with_paths else b"", b"") for oid, name in expected
            ], revisions
    # The filter flags only narrow down what a plain `rev-list --objects` prints.
    plain = git(path, "rev-list", "--objects", "--all").decode("latin-1").splitlines()
    all_oids = {line.split()[0] for line in plain}
    kinds = git(
        path, "cat-file", "--batch-check", input="".join(o + "\n" for o in all_oids).encode()
    )
    blob_oids = {
        line.split()[0] for line in kinds.decode().splitlines() if line.split()[1] == "blob"
    }
    listed = await list_blobs(client, repository=repo("rich.git"), revisions=["--all"])
    assert {b.oid for b in listed} == blob_oids and len(listed) == len(blob_oids)


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_blobs_content_and_bytes_limit(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    expected = reference_walk(path, ["--all"])
    content = {oid: data for oid, (_, data) in cat_objects(path, [o for o, _ in expected]).items()}
    assert max(len(c) for c in content.values()) == 5 * 1024 * 1024
    for bytes_limit in (-1, 1, 10, CHUNK + 5, 10**9):
        items = await list_blobs(
            client,
            repository=repo("rich.git"),
            revisions=["--all"],
            bytes_limit=bytes_limit,
            with_paths=True,
        )
        blobs = merge_items(items, with_paths=True)
        cut = None if bytes_limit < 0 else bytes_limit
        assert [(b.oid, b.size, b.path, b.data) for b in blobs] == [
            (oid, len(content[oid]), name, content[oid][:cut]) for oid, name in expected
        ], bytes_limit
    # The large blob: a header item with oid, size and the first 128 KiB, then 39 items
    # of data only (with_paths off, so nothing else).
    large = git(path, "rev-parse", "main:large.bin").decode().strip()
    items = await list_blobs(client, repository=repo("rich.git"), revisions=[large], bytes_limit=-1)
    assert len(items) == 40
    assert (items[0].oid, items[0].size, len(items[0].data)) == (large, 5 * 1024 * 1024, CHUNK)
    assert all(i == pb.ListBlobsResponse.Blob(data=i.data) for i in items[1:])
    assert b"".join(i.data for i in items) == content[large]


async def test_list_blobs_limit(client: Client, config: Config) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path)
    expected = reference_walk(path, ["--all"])
    for limit in (1, 2, len(expected) - 1, len(expected), len(expected) + 5):
        for bytes_limit in (0, -1):
            blobs = merge_items(
                await list_blobs(
                    client,
                    repository=repo("rich.git"),
                    revisions=["--all"],
                    limit=limit,
                    bytes_limit=bytes_limit,
                )
            )
            assert [b.oid for b in blobs] == [oid for oid, _ in expected][:limit]
    # 0 means no limit.
    assert len(await list_blobs(client, repository=repo("rich.git"), revisions=["--all"])) == len(
        expected
    )


async def test_list_blobs_empty_blob_and_empty_repository(client: Client, config: Config) -> None:
    path = new_path(config, "e.git")
    git("/", "init", "--bare", "--quiet", path)
    assert await list_blobs(client, repository=repo("e.git"), revisions=["--all"]) == []
    empty = git(path, "hash-object", "-w", "--stdin", input=b"").decode().strip()
    # An empty blob still gets its header item, whatever the bytes limit.
    for bytes_limit in (0, -1, 5):
        assert await list_blobs(
            client, repository=repo("e.git"), revisions=[empty], bytes_limit=bytes_limit
        ) == [pb.ListBlobsResponse.Blob(oid=empty, size=0)]


async def test_list_blobs_batches_under_one_mebibyte(client: Client, config: Config) -> None:
    path = new_path(config, "many.git")
    git("/", "init", "--bare", "--quiet", path)
    # 40 blobs of 100 KiB each: 4 MB of data, several messages of under 1 MiB each.
    oids = [
        git(path, "hash-object", "-w", "--stdin", input=bytes([i]) * 100 * 1024).decode().strip()
        for i in range(40)
    ]
    responses = await client.stream(
        SERVICE + "ListBlobs",
        pb.ListBlobsRequest(repository=repo("many.git"), revisions=oids, bytes_limit=-1),
        pb.ListBlobsResponse,
    )
    assert len(responses) >= 4
    assert all(r.ByteSize() < MESSAGE_BUDGET for r in responses)
    blobs = [b for r in responses for b in r.blobs]
    assert [b.oid for b in blobs] == oids
    assert all(b.data == bytes([i]) * 100 * 1024 for i, b in enumerate(blobs))


async def test_list_blobs_errors(client: Client, config: Config) -> None:
    rich_repository(new_path(config, "r.git"))
    cases: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
        ({"revisions": ["main"]}, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (
            {"repository": repo("nope.git"), "revisions": ["main"]},
            grpc.StatusCode.NOT_FOUND,
            "repository not found",
        ),
        ({"repository": repo("r.git")}, grpc.StatusCode.INVALID_ARGUMENT, "missing revisions"),
        (
            {"repository": repo("r.git"), "revisions": ["main", "--foobar"]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid revision: revision can't start with '-'",
        ),
        (
            {"repository": repo("r.git"), "revisions": ["ma in"]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid revision: revision can't contain whitespace",
        ),
        (
            {"repository": repo("r.git"), "revisions": [""]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid revision: empty revision",
        ),
    ]
    for fields, code, message in cases:
        error = await client.stream_error(
            SERVICE + "ListBlobs", pb.ListBlobsRequest(**fields), pb.ListBlobsResponse
        )
        assert (error.code(), error.details()) == (code, message)


async def test_list_blobs_unknown_revision_is_internal(client: Client, config: Config) -> None:
    path = new_path(config, "r.git")
    rich_repository(path)
    error = await client.stream_error(
        SERVICE + "ListBlobs",
        pb.ListBlobsRequest(repository=repo("r.git"), revisions=["doesnotexist"]),
        pb.ListBlobsResponse,
    )
    git_error = subprocess.run(
        ["git", "-C", path, "rev-list", *WALK_FLAGS, "doesnotexist"],
        env=GIT_ENV,
        capture_output=True,
    )
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == (
        f"processing blobs: rev-list pipeline command: exit status {git_error.returncode}, "
        f"stderr: {go_quote(git_error.stderr)}"
    )


@given(history=histories(max_commits=6))
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_list_blobs_random_histories(config: Config, history: History) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = new_path(config, name)
    build_history(path, history)
    expected = reference_walk(path, ["--all"])
    # pytest-trio would hand every example the first example's (stopped) server.
    async with running_client(config) as client:
        items = await list_blobs(
            client, repository=repo(name), revisions=["--all"], bytes_limit=-1, with_paths=True
        )
        every = await list_all_blobs(client, repository=repo(name))
    blobs = merge_items(items, with_paths=True)
    objects = cat_objects(path, [oid for oid, _ in expected])
    assert [(b.oid, b.path, b.data) for b in blobs] == [
        (oid, path_, objects[oid][1]) for oid, path_ in expected
    ]
    assert {b.oid: b.size for b in every} == all_blobs_reference(path)


# -- ListAllBlobs ----------------------------------------------------------------------


def all_blobs_reference(path: str, env: dict[str, str] | None = None) -> dict[str, int]:
    out = subprocess.run(
        ["git", "-C", path, "cat-file", "--batch-all-objects", "--batch-check"],
        env={**GIT_ENV, **(env or {})},
        capture_output=True,
        check=True,
    ).stdout
    rows = [line.split() for line in out.decode().splitlines()]
    return {oid: int(size) for oid, kind, size in rows if kind == "blob"}


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_all_blobs_matches_cat_file(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    # An unreachable blob is listed too.
    dangling = git(path, "hash-object", "-w", "--stdin", input=b"dangling\n").decode().strip()
    expected = all_blobs_reference(path)
    assert dangling in expected
    blobs = await list_all_blobs(client, repository=repo("rich.git"))
    assert {b.oid: b.size for b in blobs} == expected and len(blobs) == len(expected)
    assert all(not b.data for b in blobs)
    objects = cat_objects(path, list(expected))
    for bytes_limit in (-1, 1, CHUNK + 1):
        merged = merge_items(
            await list_all_blobs(client, repository=repo("rich.git"), bytes_limit=bytes_limit)
        )
        assert len(merged) == len(expected)
        for blob in merged:
            data = objects[blob.oid][1]
            assert blob.size == expected[blob.oid]
            assert blob.data == (data if bytes_limit < 0 else data[:bytes_limit])
    for limit in (1, 2, len(expected)):
        assert len(await list_all_blobs(client, repository=repo("rich.git"), limit=limit)) == limit
        merged = merge_items(
            await list_all_blobs(client, repository=repo("rich.git"), limit=limit, bytes_limit=-1)
        )
        assert len(merged) == limit


async def test_list_all_blobs_empty_and_single(client: Client, config: Config) -> None:
    path = new_path(config, "one.git")
    git("/", "init", "--bare", "--quiet", path)
    assert await list_all_blobs(client, repository=repo("one.git")) == []
    oid = git(path, "hash-object", "-w", "--stdin", input=b"foobar").decode().strip()
    assert await list_all_blobs(client, repository=repo("one.git"), bytes_limit=-1) == [
        pb.ListAllBlobsResponse.Blob(oid=oid, size=6, data=b"foobar")
    ]
    assert await list_all_blobs(client, repository=repo("one.git"), bytes_limit=1) == [
        pb.ListAllBlobsResponse.Blob(oid=oid, size=6, data=b"f")
    ]


def quarantine(path: str, content: bytes) -> tuple[str, str]:
    """An `objects/incoming-*` directory holding one new blob, as receive-pack makes it."""
    relative = "objects/incoming-test"
    directory = os.path.join(path, relative)
    os.makedirs(os.path.join(directory, "pack"), exist_ok=True)
    oid = (
        subprocess.run(
            ["git", "-C", path, "hash-object", "-w", "--stdin"],
            input=content,
            env={
                **GIT_ENV,
                "GIT_OBJECT_DIRECTORY": directory,
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.path.join(path, "objects"),
            },
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    return relative, oid


async def test_list_all_blobs_in_quarantine(client: Client, config: Config) -> None:
    path = new_path(config, "q.git")
    rich_repository(path)
    main_blobs = all_blobs_reference(path)
    relative, oid = quarantine(path, b"pushed content\n")
    assert oid not in all_blobs_reference(path)
    # Only the quarantine: just the new blob.
    alone = await list_all_blobs(
        client, repository=repo("q.git", git_object_directory=relative), bytes_limit=-1
    )
    assert alone == [pb.ListAllBlobsResponse.Blob(oid=oid, size=15, data=b"pushed content\n")]
    # The quarantine with the repository's objects as alternate: everything.
    both = await list_all_blobs(
        client,
        repository=repo(
            "q.git", git_object_directory=relative, git_alternate_object_directories=["objects"]
        ),
    )
    assert {b.oid: b.size for b in both} == {**main_blobs, oid: 15}
    # An empty quarantine has no blobs.
    os.makedirs(os.path.join(path, "objects/incoming-empty"))
    assert (
        await list_all_blobs(
            client, repository=repo("q.git", git_object_directory="objects/incoming-empty")
        )
        == []
    )


async def test_list_all_blobs_errors(client: Client, config: Config) -> None:
    rich_repository(new_path(config, "r.git"))
    cases = [
        (pb.ListAllBlobsRequest(), grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (
            pb.ListAllBlobsRequest(repository=repo("nope.git")),
            grpc.StatusCode.NOT_FOUND,
            "repository not found",
        ),
        (
            pb.ListAllBlobsRequest(
                repository=shared_pb2.Repository(storage_name="fake", relative_path="r.git")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "storage name not found",
        ),
    ]
    for request, code, message in cases:
        error = await client.stream_error(
            SERVICE + "ListAllBlobs", request, pb.ListAllBlobsResponse
        )
        assert (error.code(), error.details()) == (code, message)


def test_go_quote_matches_go() -> None:
    # Values as Go's strconv.Quote prints them.
    assert go_quote(b"") == '""'
    assert go_quote(b"fatal: bad revision 'x'\n") == "\"fatal: bad revision 'x'\\n\""
    assert go_quote(b'a"b\\c\td\r\x00\x7f') == '"a\\"b\\\\c\\td\\r\\x00\\x7f"'
    assert go_quote("caf\u00e9 \u2713".encode()) == '"caf\u00e9 \u2713"'
    assert go_quote(b"\xff\xe9") == '"\\xff\\xe9"'
    assert go_quote("\u200b\U000e0001".encode()) == '"\\u200b\\U000e0001"'

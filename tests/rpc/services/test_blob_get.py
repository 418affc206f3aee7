"""BlobService.GetBlob and GetBlobs over a real server, compared with `git cat-file`/`ls-tree`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

import grpc
import pytest
import trio
from hypothesis import HealthCheck, given, settings

from tests.helpers import Client
from tests.helpers import new_path as new_path
from tests.helpers import repository as repo
from tests.helpers import running_client as running_client
from tests.repos import (
    GIT_ENV,
    SUBMODULE,
    FastImport,
    build_history,
    git,
    histories,
    rich_repository,
)
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer
from trio_gitaly.rpc.gen.gitaly import blob_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

SERVICE = "/gitaly.BlobService/"
CHUNK = 128 * 1024
FORMATS = ["sha1", "sha256"]
History = list[tuple[str, bytes, dict[bytes, bytes | None], int | None]]


async def get_blob(client: Client, request: pb.GetBlobRequest) -> list[pb.GetBlobResponse]:
    responses: list[pb.GetBlobResponse] = await client.stream(
        SERVICE + "GetBlob", request, pb.GetBlobResponse
    )
    for later in responses[1:]:
        # size and oid only in the first message; data in chunks of at most 128 KiB.
        assert later.size == 0 and later.oid == ""
    assert all(len(r.data) <= CHUNK for r in responses)
    assert all(r.data for r in responses[1:])
    return responses


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


def blobs_of(path: str) -> list[str]:
    """Every blob in the repository, by `git cat-file --batch-all-objects`."""
    lines = git(path, "cat-file", "--batch-all-objects", "--batch-check").decode().splitlines()
    return [line.split()[0] for line in lines if line.split()[1] == "blob"]


# -- GetBlob ---------------------------------------------------------------------------


@pytest.mark.parametrize("object_format", FORMATS)
async def test_get_blob_every_blob_matches_cat_file(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    blobs = blobs_of(path)
    assert len(blobs) >= 10
    objects = cat_objects(path, blobs)
    for oid in blobs:
        responses = await get_blob(
            client, pb.GetBlobRequest(repository=repo("rich.git"), oid=oid, limit=-1)
        )
        expected = objects[oid][1]
        assert responses[0].oid == oid
        assert responses[0].size == len(expected)
        assert b"".join(r.data for r in responses) == expected
        # The 5 MiB file is split into full 128 KiB messages; small ones fit one.
        assert len(responses) == max(1, -(-len(expected) // CHUNK))


@pytest.mark.parametrize("object_format", FORMATS)
async def test_get_blob_limits(client: Client, config: Config, object_format: str) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    large = git(path, "rev-parse", "main:large.bin").decode().strip()
    content = git(path, "cat-file", "blob", large)
    size = len(content)
    for limit, want in [
        (-1, content),
        (-7, content),
        (0, b""),
        (10, content[:10]),
        (CHUNK, content[:CHUNK]),
        (CHUNK + 1, content[: CHUNK + 1]),
        (size, content),
        (size + 1, content),
    ]:
        responses = await get_blob(
            client, pb.GetBlobRequest(repository=repo("rich.git"), oid=large, limit=limit)
        )
        assert responses[0].size == size and responses[0].oid == large
        assert b"".join(r.data for r in responses) == want, limit
        if limit == 0:
            assert len(responses) == 1
    # The process was left in step after reading only part of a blob.
    readme = git(path, "rev-parse", "main:README.md").decode().strip()
    responses = await get_blob(
        client, pb.GetBlobRequest(repository=repo("rich.git"), oid=readme, limit=-1)
    )
    assert responses[0].data == b"# readme\n"


async def test_get_blob_resolves_revisions(client: Client, config: Config) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path)
    responses = await get_blob(
        client, pb.GetBlobRequest(repository=repo("rich.git"), oid="main:docs/manual.md", limit=-1)
    )
    assert responses[0].oid == git(path, "rev-parse", "main:docs/manual.md").decode().strip()
    assert responses[0].data == git(path, "cat-file", "blob", "main:docs/manual.md")


async def test_get_blob_empty_blob(client: Client, config: Config) -> None:
    path = new_path(config, "empty-blob.git")
    git("/", "init", "--bare", "--quiet", path)
    oid = git(path, "hash-object", "-w", "--stdin", input=b"").decode().strip()
    responses = await get_blob(
        client, pb.GetBlobRequest(repository=repo("empty-blob.git"), oid=oid, limit=-1)
    )
    assert responses == [pb.GetBlobResponse(oid=oid, size=0)]


@pytest.mark.parametrize("object_format", FORMATS)
async def test_get_blob_missing_or_not_a_blob_is_one_empty_message(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    names = rich_repository(path, object_format)
    zeros = "0" * (40 if object_format == "sha1" else 64)
    not_blobs = [names["merge"], "main^{tree}", "v1.0.0", "blob-tag", "main"]
    for oid in ["doesnotexist", zeros, "main:nope", *not_blobs]:
        kind = git(path, "cat-file", "-t", oid).decode().strip() if oid in not_blobs else None
        assert kind != "blob"
        responses = await client.stream(
            SERVICE + "GetBlob",
            pb.GetBlobRequest(repository=repo("rich.git"), oid=oid, limit=-1),
            pb.GetBlobResponse,
        )
        assert responses == [pb.GetBlobResponse()], oid


async def test_get_blob_errors(client: Client, config: Config) -> None:
    path = new_path(config, "r.git")
    rich_repository(path)
    cases = [
        (
            pb.GetBlobRequest(oid="main:README.md"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "repository not set",
        ),
        (
            pb.GetBlobRequest(
                repository=shared_pb2.Repository(storage_name="fake", relative_path="path"),
                oid="main:README.md",
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "storage name not found",
        ),
        (
            pb.GetBlobRequest(repository=repo("path"), oid="main:README.md"),
            grpc.StatusCode.NOT_FOUND,
            "repository not found",
        ),
        (
            pb.GetBlobRequest(repository=repo("r.git")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "empty Oid",
        ),
    ]
    for request, code, message in cases:
        error = await client.stream_error(SERVICE + "GetBlob", request, pb.GetBlobResponse)
        assert (error.code(), error.details()) == (code, message)


# -- GetBlobs --------------------------------------------------------------------------


def group_blobs(responses: Sequence[pb.GetBlobsResponse]) -> list[pb.GetBlobsResponse]:
    """One message per requested entry: data chunks folded into their header."""
    groups: list[pb.GetBlobsResponse] = []
    for response in responses:
        assert len(response.data) <= CHUNK
        if response.revision:
            groups.append(response)
        else:
            # A data chunk carries nothing but data.
            assert response == pb.GetBlobsResponse(data=response.data) and response.data
            groups[-1].data += response.data
    return groups


async def get_blobs(
    client: Client, name: str, pairs: Sequence[tuple[str, bytes]], limit: int = -1
) -> list[pb.GetBlobsResponse]:
    request = pb.GetBlobsRequest(
        repository=repo(name),
        limit=limit,
        revision_paths=[pb.GetBlobsRequest.RevisionPath(revision=r, path=p) for r, p in pairs],
    )
    responses = await client.stream(SERVICE + "GetBlobs", request, pb.GetBlobsResponse)
    return group_blobs(responses)


def upstream_repository(path: str) -> dict[str, str]:
    """The repository of Gitaly's GetBlobs test: two blobs, a submodule, a subtree."""
    build = FastImport()
    submodule = "1234567890" * 4
    build.commit(
        "refs/heads/main",
        b"commit\n",
        {
            b"a": b"a" * 13,
            b"b": b"b" * 50,
            b"submodule": (SUBMODULE, submodule),
            b"dir/subfile": b"a" * 13,
        },
        parents=[],
    )
    build.run(path)

    def rev(spec: str) -> str:
        return git(path, "rev-parse", spec).decode().strip()

    return {
        "commit": rev("main"),
        "a": rev("main:a"),
        "b": rev("main:b"),
        "dir": rev("main:dir"),
        "submodule": submodule,
    }


async def test_get_blobs_upstream_cases(client: Client, config: Config) -> None:
    path = new_path(config, "up.git")
    ids = upstream_repository(path)
    commit = ids["commit"]

    def blob(name: str, data: bytes, size: int) -> pb.GetBlobsResponse:
        return pb.GetBlobsResponse(
            revision=commit,
            path=name.encode(),
            oid=ids[name],
            data=data,
            size=size,
            mode=0o100644,
            type=shared_pb2.BLOB,
        )

    def missing(name: bytes) -> pb.GetBlobsResponse:
        return pb.GetBlobsResponse(revision=commit, path=name)

    both = [(commit, b"a"), (commit, b"b")]
    assert await get_blobs(client, "up.git", both, limit=0) == [
        blob("a", b"", 13),
        blob("b", b"", 50),
    ]
    for limit in (-1, 9000):
        assert await get_blobs(client, "up.git", both, limit=limit) == [
            blob("a", b"a" * 13, 13),
            blob("b", b"b" * 50, 50),
        ]
    assert await get_blobs(client, "up.git", both, limit=5) == [
        blob("a", b"aaaaa", 13),
        blob("b", b"bbbbb", 50),
    ]
    assert await get_blobs(client, "up.git", [(commit, b"does-not-exist")]) == [
        missing(b"does-not-exist")
    ]
    assert await get_blobs(client, "up.git", [(commit, b"a"), (commit, b"nope")], limit=0) == [
        blob("a", b"", 13),
        missing(b"nope"),
    ]
    assert await get_blobs(client, "up.git", [(commit, b"")]) == [missing(b"")]
    assert await get_blobs(client, "up.git", [(commit, b"/")]) == [missing(b"/")]
    assert await get_blobs(client, "up.git", [(commit, b"dir")]) == [
        pb.GetBlobsResponse(
            revision=commit,
            path=b"dir",
            oid=ids["dir"],
            mode=0o40000,
            type=shared_pb2.TREE,
            size=int(git(path, "cat-file", "-s", ids["dir"])),
        )
    ]
    assert await get_blobs(client, "up.git", [(commit, b"submodule")]) == [
        pb.GetBlobsResponse(
            revision=commit,
            path=b"submodule",
            oid=ids["submodule"],
            mode=0o160000,
            type=shared_pb2.COMMIT,
            is_submodule=True,
        )
    ]


async def test_get_blobs_path_rules(client: Client, config: Config) -> None:
    """Gitaly's lexical rules: trailing slashes go, anything else unclean finds nothing."""
    path = new_path(config, "up.git")
    ids = upstream_repository(path)
    found = await get_blobs(
        client, "up.git", [("main", b"dir/"), ("main", b"a//"), ("main", b"dir/subfile")]
    )
    assert [(g.path, g.oid) for g in found] == [
        (b"dir", ids["dir"]),
        (b"a", ids["a"]),
        (b"dir/subfile", ids["a"]),
    ]
    unclean = [b"./a", b"dir//subfile", b"dir/./subfile", b"../a", b"dir/../a", b"/a", b"..",
               b"a/x", b"nope/a", b"di\nr/subfile", b"//"]  # fmt: skip
    answers = await get_blobs(client, "up.git", [("main", p) for p in unclean])
    # "//" is trimmed to nothing (it is longer than one byte).
    expected_paths = [p if p != b"//" else b"" for p in unclean]
    assert answers == [pb.GetBlobsResponse(revision="main", path=p) for p in expected_paths]
    # Unknown revisions find nothing either.
    assert await get_blobs(client, "up.git", [("nope", b"a")]) == [
        pb.GetBlobsResponse(revision="nope", path=b"a")
    ]


def ls_tree(path: str, revision: str) -> list[tuple[int, str, str, bytes]]:
    """(mode, type, oid, path) for every entry, trees included, by `git ls-tree -r -t -z`."""
    out = git(path, "ls-tree", "-r", "-t", "-z", "--full-tree", revision)
    entries = []
    for record in out.split(b"\0"):
        if record:
            meta, name = record.split(b"\t", 1)
            mode, kind, oid = meta.decode().split()
            entries.append((int(mode, 8), kind, oid, name))
    return entries


async def assert_get_blobs_matches_git(client: Client, path: str, name: str, revision: str) -> None:
    entries = ls_tree(path, revision)
    # A path that is in no tree, so that even an empty tree makes a request.
    absent = b"\xffabsent/\xffpath"
    groups = await get_blobs(
        client, name, [*((revision, e[3]) for e in entries), (revision, absent)]
    )
    assert groups.pop() == pb.GetBlobsResponse(revision=revision, path=absent)
    assert len(groups) == len(entries)
    types = {"blob": shared_pb2.BLOB, "tree": shared_pb2.TREE, "commit": shared_pb2.COMMIT}
    objects = cat_objects(path, [e[2] for e in entries if e[1] != "commit"])
    for (mode, kind, oid, entry_path), group in zip(entries, groups, strict=True):
        assert (group.revision, group.path, group.oid, group.mode) == (
            revision,
            entry_path,
            oid,
            mode,
        )
        assert group.type == types[kind]
        assert group.is_submodule == (kind == "commit")
        if kind == "commit":
            assert group.size == 0 and not group.data
            continue
        object_type, content = objects[oid]
        assert object_type == kind
        assert group.size == len(content)
        assert group.data == (content if kind == "blob" else b"")


@pytest.mark.parametrize("object_format", FORMATS)
async def test_get_blobs_every_entry_matches_ls_tree(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    names = rich_repository(path, object_format)
    for revision in [
        "main",
        "feature",
        "v1.0.0",
        names["root"],
        names["latin1"],
        "\u00fcnicode-branch",
    ]:
        await assert_get_blobs_matches_git(client, path, "rich.git", revision)


async def test_get_blobs_errors(client: Client, config: Config) -> None:
    rich_repository(new_path(config, "r.git"))

    def request(
        *pairs: tuple[str, bytes], repository: shared_pb2.Repository | None = None
    ) -> pb.GetBlobsRequest:
        return pb.GetBlobsRequest(
            repository=repository,
            revision_paths=[pb.GetBlobsRequest.RevisionPath(revision=r, path=p) for r, p in pairs],
        )

    cases = [
        (
            request(("does-not-exist", b"file")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "repository not set",
        ),
        (
            request(repository=repo("r.git")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "empty RevisionPaths",
        ),
        (
            request(("--output=/meow", b"CHANGELOG"), repository=repo("r.git")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "revision can't start with '-'",
        ),
        (
            request(("main", b"README.md"), ("main:README.md", b"x"), repository=repo("r.git")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "revision can't contain ':'",
        ),
        (
            request(("", b"README.md"), repository=repo("r.git")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "empty revision",
        ),
        (
            request(("main", b"a"), repository=repo("missing.git")),
            grpc.StatusCode.NOT_FOUND,
            "repository not found",
        ),
    ]
    for req, code, message in cases:
        error = await client.stream_error(SERVICE + "GetBlobs", req, pb.GetBlobsResponse)
        assert (error.code(), error.details()) == (code, message)


@given(history=histories(max_commits=5))
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_get_blobs_random_histories(config: Config, history: History) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = new_path(config, name)
    commits = build_history(path, history)
    # pytest-trio would hand every example the first example's (stopped) server.
    async with running_client(config) as client:
        for oid in commits.values():
            await assert_get_blobs_matches_git(client, path, name, oid)


async def test_get_blobs_names_with_newlines(client: Client, config: Config) -> None:
    """cat-file cannot be asked for "rev:a\\nb"; such directories are found all the same."""
    path = new_path(config, "nl.git")
    build = FastImport()
    build.commit(
        "refs/heads/main",
        b"newlines\n",
        {b"new\nline/file": b"one\n", b"new\nline/deeper\n/x": b"two\n", b"top\nfile": b"three\n"},
        parents=[],
    )
    build.run(path)
    await assert_get_blobs_matches_git(client, path, "nl.git", "main")
    groups = await get_blobs(
        client, "nl.git", [("main", b"new\nline/deeper\n/x"), ("main", b"new\nline/nope")]
    )
    assert groups[0].data == b"two\n"
    assert groups[1] == pb.GetBlobsResponse(revision="main", path=b"new\nline/nope")


async def test_get_blobs_blob_mode_on_a_tree(client: Client, config: Config) -> None:
    """An entry whose mode says blob but whose object is a tree: Gitaly's answers."""
    path = new_path(config, "odd.git")
    git("/", "init", "--bare", "--quiet", path)
    blob = git(path, "hash-object", "-w", "--stdin", input=b"x\n").decode().strip()
    subtree = git(path, "mktree", input=f"100644 blob {blob}\tx\n".encode()).decode().strip()
    raw = b"100644 odd\0" + bytes.fromhex(subtree)
    tree = (
        git(path, "hash-object", "-w", "-t", "tree", "--literally", "--stdin", input=raw)
        .decode()
        .strip()
    )
    commit = git(path, "commit-tree", "-m", "odd", tree).decode().strip()
    size = int(git(path, "cat-file", "-s", subtree))
    # Without data the object's type is never checked: a blob header with the tree's size.
    assert await get_blobs(client, "odd.git", [(commit, b"odd")], limit=0) == [
        pb.GetBlobsResponse(
            revision=commit,
            path=b"odd",
            oid=subtree,
            mode=0o100644,
            type=shared_pb2.BLOB,
            size=size,
        )
    ]
    error = await client.stream_error(
        SERVICE + "GetBlobs",
        pb.GetBlobsRequest(
            repository=repo("odd.git"),
            limit=-1,
            revision_paths=[pb.GetBlobsRequest.RevisionPath(revision=commit, path=b"odd")],
        ),
        pb.GetBlobsResponse,
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INTERNAL,
        'blob got unexpected type "tree"',
    )


async def test_get_blob_in_quarantine(client: Client, config: Config) -> None:
    path = new_path(config, "q.git")
    rich_repository(path)
    directory = os.path.join(path, "objects", "incoming-q")
    os.makedirs(os.path.join(directory, "pack"))
    env = {**GIT_ENV, "GIT_OBJECT_DIRECTORY": directory}
    oid = (
        subprocess.run(
            ["git", "-C", path, "hash-object", "-w", "--stdin"],
            input=b"quarantined\n",
            env=env,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    quarantined = repo("q.git")
    quarantined.git_object_directory = "objects/incoming-q"
    quarantined.git_alternate_object_directories.append("objects")
    responses = await get_blob(client, pb.GetBlobRequest(repository=quarantined, oid=oid, limit=-1))
    assert responses == [pb.GetBlobResponse(oid=oid, size=12, data=b"quarantined\n")]
    # The repository itself does not have it.
    assert await get_blob(client, pb.GetBlobRequest(repository=repo("q.git"), oid=oid)) == [
        pb.GetBlobResponse()
    ]
    # Both repositories' objects through the alternate.
    readme = await get_blob(
        client, pb.GetBlobRequest(repository=quarantined, oid="main:README.md", limit=-1)
    )
    assert readme[0].data == b"# readme\n"


async def test_get_blob_client_cancels_mid_blob(client: Client, config: Config) -> None:
    """A call cut short leaves no cat-file out of step: later calls still read correctly."""
    path = new_path(config, "rich.git")
    rich_repository(path)
    method = client.channel.unary_stream(
        SERVICE + "GetBlob",
        request_serializer=pb.GetBlobRequest.SerializeToString,
        response_deserializer=pb.GetBlobResponse.FromString,
    )

    def first_then_cancel() -> pb.GetBlobResponse:
        call = method(
            pb.GetBlobRequest(repository=repo("rich.git"), oid="main:large.bin", limit=-1)
        )
        first: pb.GetBlobResponse = next(call)
        call.cancel()
        return first

    for _ in range(3):
        first = await trio.to_thread.run_sync(first_then_cancel)
        assert first.size == 5 * 1024 * 1024 and len(first.data) == CHUNK
        await trio.sleep(0.05)
        for name, content in [
            ("README.md", b"# readme\n"),
            ("docs/manual.md", b"line 1\nline 2\nline 3\n"),
        ]:
            responses = await get_blob(
                client, pb.GetBlobRequest(repository=repo("rich.git"), oid=f"main:{name}", limit=-1)
            )
            assert responses[0].data == content


def _cat_file_pids(repo_path: str) -> set[int]:
    """Live (not zombie) `git cat-file` processes working on `repo_path`."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if b"cat-file" in argv and repo_path.encode() in argv and state != b"Z":
            pids.add(int(entry))
    return pids


async def test_cancelled_get_blob_leaves_no_cat_file_behind(
    client: Client, config: Config, server: RunningServer
) -> None:
    """The process a cut-off GetBlob was reading from is killed, never pooled again."""
    path = new_path(config, "cancel.git")
    rich_repository(path)
    registry = server.metrics.registry
    method = client.channel.unary_stream(
        SERVICE + "GetBlob",
        request_serializer=pb.GetBlobRequest.SerializeToString,
        response_deserializer=pb.GetBlobResponse.FromString,
    )

    def first_then_cancel() -> None:
        call = method(
            pb.GetBlobRequest(repository=repo("cancel.git"), oid="main:large.bin", limit=-1)
        )
        next(call)
        call.cancel()

    await trio.to_thread.run_sync(first_then_cancel)
    with trio.fail_after(5):
        while not registry.get_sample_value("gitaly_catfile_cache_total", {"type": "dirty"}):
            await trio.sleep(0.02)
    # What lives for this repository is exactly what the cache holds idle: nothing else.
    with trio.fail_after(5):
        while len(_cat_file_pids(path)) != server.metrics.registry.get_sample_value(
            "gitaly_catfile_cache_members", {"type": "object_reader"}
        ):
            await trio.sleep(0.02)
    assert _cat_file_pids(path) == set()

"""CommitService.ListFiles over a real server, compared with `git ls-tree -r`."""

from __future__ import annotations

import grpc
import pytest

from tests.helpers import Client
from tests.repos import FastImport, git, rich_repository
from tests.rpc.services.test_commit_trees_entry import ls_tree, new_path, repo
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import commit_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

SERVICE = "/gitaly.CommitService/"
FORMATS = ["sha1", "sha256"]
INVALID = grpc.StatusCode.INVALID_ARGUMENT


# -- ListFiles ---------------------------------------------------------------------------


async def list_files(client: Client, name: str, revision: bytes) -> list[pb.ListFilesResponse]:
    request = pb.ListFilesRequest(repository=repo(name), revision=revision)
    responses: list[pb.ListFilesResponse] = await client.stream(
        SERVICE + "ListFiles", request, pb.ListFilesResponse
    )
    # Gitaly's chunker rule: the paths of one message add up to less than 1 MiB.
    assert all(sum(len(p) + 3 for p in r.paths) < 1024 * 1024 for r in responses)
    return responses


def blob_paths(path: str, revision: str) -> list[bytes]:
    return [p for _, kind, _, p in ls_tree(path, revision, "-r", "--full-tree") if kind == b"blob"]


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_files_matches_ls_tree(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    commits = rich_repository(path, object_format)
    for revision in (
        "main",
        "feature",
        "HEAD",
        "refs/heads/main",
        "v1.0.0",
        commits["root"],
        "main^{tree}",
    ):
        responses = await list_files(client, "rich.git", revision.encode())
        paths = [p for r in responses for p in r.paths]
        assert paths == blob_paths(path, revision), revision
    # The submodule gitlink is not a file; non-UTF-8 names come through as bytes.
    default = [p for r in await list_files(client, "rich.git", b"") for p in r.paths]
    assert default == blob_paths(path, "main")
    assert b"vendor/lib" not in default and b"caf\xe9.txt" in default


async def test_list_files_unknown_revisions_and_defaults(client: Client, config: Config) -> None:
    path = new_path(config, "r.git")
    rich_repository(path)
    for revision in (b"1234123412341234", b"non/existing", b"refs/heads/foobar", b"main~100"):
        assert await list_files(client, "r.git", revision) == [pb.ListFilesResponse()]
    # A revision that names a blob lists nothing, without an error (Gitaly ignores
    # ls-tree's failure).
    blob = git(path, "rev-parse", "main:README.md").strip()
    assert await list_files(client, "r.git", blob) == []
    assert await list_files(client, "r.git", b"blob-tag") == []

    empty = new_path(config, "empty.git")
    git(path, "init", "--bare", "--quiet", empty)
    assert await list_files(client, "empty.git", b"refs/heads/main") == [pb.ListFilesResponse()]
    error = await client.stream_error(
        SERVICE + "ListFiles",
        pb.ListFilesRequest(repository=repo("empty.git")),
        pb.ListFilesResponse,
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "repository does not have a default branch",
    )

    # Without a revision: HEAD's target, else main, else master, else the first branch.
    fallback = new_path(config, "fallback.git")
    build = FastImport()
    build.commit("refs/heads/zeta", b"z\n", {b"zeta": b"z"}, parents=[])
    build.commit("refs/heads/beta", b"b\n", {b"beta": b"b"}, parents=[])
    build.run(fallback)
    git(fallback, "symbolic-ref", "HEAD", "refs/heads/unborn")
    assert [p for r in await list_files(client, "fallback.git", b"") for p in r.paths] == [b"beta"]
    git(fallback, "branch", "master", "zeta")
    assert [p for r in await list_files(client, "fallback.git", b"") for p in r.paths] == [b"zeta"]
    git(fallback, "symbolic-ref", "HEAD", "refs/heads/beta")
    assert [p for r in await list_files(client, "fallback.git", b"") for p in r.paths] == [b"beta"]
    git(fallback, "update-ref", "--no-deref", "HEAD", "zeta")
    error = await client.stream_error(
        SERVICE + "ListFiles",
        pb.ListFilesRequest(repository=repo("fallback.git")),
        pb.ListFilesResponse,
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, 'revision not found ""')


async def test_list_files_chunks_many_paths(client: Client, config: Config) -> None:
    path = new_path(config, "many.git")
    build = FastImport()
    files = {b"dir/" + b"n" * 200 + b"%05d" % i: b"x" for i in range(7000)}
    build.commit("refs/heads/main", b"many\n", files, parents=[])
    build.run(path)
    responses = await list_files(client, "many.git", b"main")
    assert len(responses) >= 2
    assert [p for r in responses for p in r.paths] == sorted(files)


async def test_list_files_errors(client: Client, config: Config) -> None:
    rich_repository(new_path(config, "r.git"))
    cases = [
        (pb.ListFilesRequest(), INVALID, "repository not set"),
        (pb.ListFilesRequest(repository=shared_pb2.Repository()), INVALID, "repository not set"),
        (
            pb.ListFilesRequest(
                repository=shared_pb2.Repository(storage_name="foo", relative_path="bar")
            ),
            INVALID,
            "storage name not found",
        ),
        (
            pb.ListFilesRequest(repository=repo("r.git"), revision=b"--output=/meow"),
            INVALID,
            "revision can't start with '-'",
        ),
        (
            pb.ListFilesRequest(repository=repo("nope.git")),
            grpc.StatusCode.NOT_FOUND,
            "repository not found",
        ),
    ]
    for request, code, message in cases:
        error = await client.stream_error(SERVICE + "ListFiles", request, pb.ListFilesResponse)
        assert (error.code(), error.details()) == (code, message), request

"""CommitService LastCommitForPath and ListLastCommitsForTree against `git log -1 -- <path>`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from tests.helpers import Client
from tests.repos import GIT_ENV, FastImport, build_history, git, histories, rich_repository
from tests.rpc.services.test_commit_trees_entry import ls_tree, new_path, own_server, repo
from tests.rpc.services.test_commit_trees_files import blob_paths, list_files
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import commit_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

SERVICE = "/gitaly.CommitService/"
FORMATS = ["sha1", "sha256"]
RANK = {b"tree": 1, b"blob": 2, b"commit": 3}
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def git_bytes(path: str, *args: bytes, env: dict[str, str] | None = None) -> bytes:
    """The git CLI with byte arguments (paths that are not UTF-8)."""
    return subprocess.run(
        [b"git", b"-C", path.encode(), *args],
        check=True,
        capture_output=True,
        env={**GIT_ENV, **(env or {})},
    ).stdout


def last_commit(path: str, revision: str, file_path: bytes, *, literal: bool = False) -> str | None:
    """`git log -1 --format=%H <revision> -- <path>`: the reference answer."""
    env = {"GIT_LITERAL_PATHSPECS": "1"} if literal else None
    out = git_bytes(
        path, b"log", b"--format=%H", b"-1", revision.encode(), b"--", file_path, env=env
    )
    return out.decode().strip() or None


def assert_commit_is(path: str, commit: shared_pb2.GitCommit, oid: str) -> None:
    """The GitCommit describes `oid` as git does (id, tree, parents, message, author)."""
    assert commit.id == oid
    fields = git(path, "log", "-1", "--format=%T%x00%P%x00%at%x00%ct", oid)
    tree, parents, authored, committed = fields.rstrip(b"\n").split(b"\0")
    assert commit.tree_id == tree.decode()
    assert list(commit.parent_ids) == parents.decode().split()
    assert commit.author.date.seconds == int(authored)
    assert commit.committer.date.seconds == int(committed)
    # Names as stored (git log would re-encode an ISO-8859-1 commit's).
    raw = git(path, "cat-file", "commit", oid)
    headers, body = raw.split(b"\n\n", 1)
    author = next(line for line in headers.split(b"\n") if line.startswith(b"author "))
    name, _, rest = author.removeprefix(b"author ").partition(b" <")
    assert (commit.author.name, commit.author.email) == (name, rest.split(b">")[0])
    assert commit.body == body
    assert commit.subject == body.split(b"\n", 1)[0]


# -- LastCommitForPath -----------------------------------------------------------------------


async def last_commit_for_path(client: Client, **fields: Any) -> pb.LastCommitForPathResponse:
    response: pb.LastCommitForPathResponse = await client.unary(
        SERVICE + "LastCommitForPath",
        pb.LastCommitForPathRequest(**fields),
        pb.LastCommitForPathResponse,
    )
    return response


@pytest.mark.parametrize("object_format", FORMATS)
async def test_last_commit_for_path_matches_git_log(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    every = [p for _, _, _, p in ls_tree(path, "main", "-r", "-t")]
    # Paths that are gone (renamed away), directories, the root and a glob.
    every += [b"docs/guide.md", b"feature.txt", b"", b"/", b"*", b"docs/", b"nope"]
    for revision in ("main", "feature", "v2.0.0"):
        for file_path in every:
            response = await last_commit_for_path(
                client, repository=repo("rich.git"), revision=revision.encode(), path=file_path
            )
            expected = last_commit(path, revision, b"." if file_path in (b"", b"/") else file_path)
            if expected is None:
                assert not response.HasField("commit"), (revision, file_path)
            else:
                assert_commit_is(path, response.commit, expected)


async def test_last_commit_for_path_literal_pathspecs(client: Client, config: Config) -> None:
    path = new_path(config, "glob.git")
    build = FastImport()
    first = build.commit("refs/heads/main", b"file\n", {b"file": b"unmodified"}, parents=[])
    glob = build.commit("refs/heads/main", b"glob\n", {b":wq": b"glob"})
    build.commit("refs/heads/main", b"more\n", {b"uninteresting": b"x"})
    marks = build.run(path)
    base = {"repository": repo("glob.git"), "revision": b"main", "path": b":wq"}
    assert (await last_commit_for_path(client, **base, literal_pathspec=True)).commit.id == marks[
        glob
    ]
    options = shared_pb2.GlobalOptions(literal_pathspecs=True)
    assert (await last_commit_for_path(client, **base, global_options=options)).commit.id == marks[
        glob
    ]
    assert not (await last_commit_for_path(client, **base)).HasField("commit")
    response = await last_commit_for_path(client, **{**base, "path": b"file"})
    assert response.commit.id == marks[first]
    assert not response.commit.trailers  # Gitaly sends no trailers here


async def test_last_commit_for_path_errors(client: Client, config: Config) -> None:
    path = new_path(config, "r.git")
    rich_repository(path)
    good = {"repository": repo("r.git"), "revision": b"main", "path": b"README.md"}
    cases: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
        ({**good, "repository": None}, INVALID, "repository not set"),
        (
            {**good, "repository": shared_pb2.Repository(storage_name="fake", relative_path="x")},
            INVALID,
            "storage name not found",
        ),
        ({**good, "revision": b""}, INVALID, "empty revision"),
        ({**good, "revision": b"--output=/meow"}, INVALID, "revision can't start with '-'"),
        ({**good, "path": path.encode()}, INVALID, "path is an absolute path"),
        ({**good, "path": b"foo/bar/../../../baz"}, INVALID, "path escapes repository"),
        ({**good, "path": b".."}, INVALID, "path escapes repository"),
        (
            {**good, "revision": b"does-not-exist"},
            grpc.StatusCode.INTERNAL,
            "logging last commit for path: exit status 128",
        ),
    ]
    for fields, code, message in cases:
        error = await client.error(
            SERVICE + "LastCommitForPath",
            pb.LastCommitForPathRequest(**fields),
            pb.LastCommitForPathResponse,
        )
        assert (error.code(), error.details()) == (code, message), fields
    # "a/.." stays inside and means the root.
    inside = await last_commit_for_path(client, **{**good, "path": b"docs/.."})
    assert inside.commit.id == last_commit(path, "main", b"docs/..")


# -- ListLastCommitsForTree ------------------------------------------------------------------


async def list_last_commits(
    client: Client, **fields: Any
) -> list[pb.ListLastCommitsForTreeResponse]:
    responses: list[pb.ListLastCommitsForTreeResponse] = await client.stream(
        SERVICE + "ListLastCommitsForTree",
        pb.ListLastCommitsForTreeRequest(**fields),
        pb.ListLastCommitsForTreeResponse,
    )
    assert all(0 < len(r.commits) <= 10 for r in responses)
    return responses


def expected_last_commits(
    path: str, revision: str, tree_path: bytes, *, literal: bool = False
) -> list[tuple[bytes, str]]:
    """`git ls-tree --full-name <rev> -- <path>` sorted trees first, each with its git log -1."""
    env = {"GIT_LITERAL_PATHSPECS": "1"} if literal else None
    out = git_bytes(
        path, b"ls-tree", b"-z", b"--full-name", revision.encode(), b"--", tree_path, env=env
    )
    entries = []
    for record in out.split(b"\0"):
        if record:
            meta, _, name = record.partition(b"\t")
            entries.append((meta.split(b" ")[1], name))
    entries.sort(key=lambda entry: RANK[entry[0]])
    result = []
    for _, name in entries:
        commit = last_commit(path, revision, name, literal=literal)
        assert commit is not None
        result.append((name, commit))
    return result


def flatten(responses: list[pb.ListLastCommitsForTreeResponse]) -> list[tuple[bytes, str]]:
    return [(c.path_bytes, c.commit.id) for r in responses for c in r.commits]


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_last_commits_for_tree_matches_git(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    for revision in ("main", "feature", "v1.0.0"):
        for tree_path in (b"", b"/", b"docs/", b"docs", b"vendor/", b"bin/", b"nope/"):
            responses = await list_last_commits(
                client, repository=repo("rich.git"), revision=revision, path=tree_path, limit=100
            )
            expected = expected_last_commits(
                path, revision, tree_path if tree_path not in (b"", b"/") else b"."
            )
            assert flatten(responses) == expected, (revision, tree_path)
            for response in responses:
                for item in response.commits:
                    assert_commit_is(path, item.commit, item.commit.id)


async def test_list_last_commits_for_tree_offset_limit_batches(
    client: Client, config: Config
) -> None:
    path = new_path(config, "many.git")
    build = FastImport()
    build.commit(
        "refs/heads/main", b"first\n", {b"f%02d" % i: b"%d" % i for i in range(25)}, parents=[]
    )
    build.commit(
        "refs/heads/main",
        b"second\n",
        {b"f%02d" % i: b"changed" for i in range(0, 25, 3)} | {b"dir/x": b"x"},
    )
    build.run(path)
    expected = expected_last_commits(path, "main", b".")
    assert len(expected) == 26
    base = {"repository": repo("many.git"), "revision": "main", "path": b"/"}
    responses = await list_last_commits(client, **base, limit=100)
    assert [len(r.commits) for r in responses] == [10, 10, 6]
    assert flatten(responses) == expected
    assert expected[0][0] == b"dir"  # trees first
    for offset, limit in ((0, 1), (2, 25), (5, 10), (25, 5), (26, 5), (40, 1), (3, 0), (0, 0)):
        responses = await list_last_commits(client, **base, offset=offset, limit=limit)
        assert flatten(responses) == expected[offset : offset + limit], (offset, limit)


async def test_list_last_commits_for_tree_special_paths(client: Client, config: Config) -> None:
    path = new_path(config, "special.git")
    build = FastImport()
    build.commit(
        "refs/heads/main",
        b"odd names\n",
        {b"-test/file": b"dash", b":wq/file": b"glob", b"hello\x80world": b"non-utf8"},
        parents=[],
    )
    build.run(path)
    commit = git(path, "rev-parse", "main").decode().strip()
    base = {"repository": repo("special.git"), "revision": commit, "limit": 25}
    assert flatten(await list_last_commits(client, **base, path=b"-test/")) == [
        (b"-test/file", commit)
    ]
    literal = shared_pb2.GlobalOptions(literal_pathspecs=True)
    assert flatten(
        await list_last_commits(client, **base, path=b":wq", global_options=literal)
    ) == [(b":wq", commit)]
    assert await list_last_commits(client, **base, path=b":wq") == []
    root = flatten(await list_last_commits(client, **base, global_options=literal))
    assert (b"hello\x80world", commit) in root
    assert root == expected_last_commits(path, commit, b".", literal=True)
    # Without literal pathspecs, git log finds no commit for ":wq" in the root listing:
    # Gitaly fails the call with its catfile NotFoundError.
    error = await client.stream_error(
        SERVICE + "ListLastCommitsForTree",
        pb.ListLastCommitsForTreeRequest(**base),
        pb.ListLastCommitsForTreeResponse,
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, "object not found")


async def test_list_last_commits_for_tree_errors(client: Client, config: Config) -> None:
    path = new_path(config, "r.git")
    commits = rich_repository(path)
    good = {"repository": repo("r.git"), "revision": commits["second"], "path": b"/", "limit": 25}
    cases: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
        ({**good, "revision": ""}, INVALID, "empty revision"),
        (
            {**good, "repository": shared_pb2.Repository(storage_name="broken", relative_path="x")},
            INVALID,
            "storage name not found",
        ),
        ({**good, "repository": None}, INVALID, "repository not set"),
        ({**good, "revision": "a"}, grpc.StatusCode.INTERNAL, "exit status 128"),
        ({**good, "revision": "--output=/meow"}, INVALID, "revision can't start with '-'"),
        ({**good, "offset": -1}, INVALID, "offset negative"),
        ({**good, "limit": -1}, INVALID, "limit negative"),
    ]
    for fields, code, message in cases:
        error = await client.stream_error(
            SERVICE + "ListLastCommitsForTree",
            pb.ListLastCommitsForTreeRequest(**fields),
            pb.ListLastCommitsForTreeResponse,
        )
        assert (error.code(), error.details()) == (code, message), fields


@given(history=histories(max_commits=5))
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_paths_random_histories(
    config: Config,
    connect: Callable[..., Client],
    history: list,  # type: ignore[type-arg]
) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = new_path(config, name)
    commits = build_history(path, history)
    async with own_server(config, connect) as client:
        await check_paths(client, path, name, commits)


async def check_paths(client: Client, path: str, name: str, commits: dict[int, str]) -> None:
    # Random names may start with pathspec magic (":x"): compare with literal pathspecs.
    literal = shared_pb2.GlobalOptions(literal_pathspecs=True)
    for oid in set(commits.values()):
        responses = await list_last_commits(
            client, repository=repo(name), revision=oid, limit=1000, global_options=literal
        )
        assert flatten(responses) == expected_last_commits(path, oid, b".", literal=True)
        files = [p for r in await list_files(client, name, oid.encode()) for p in r.paths]
        assert files == blob_paths(path, oid)
        for file_path in files[:5]:
            response = await last_commit_for_path(
                client,
                repository=repo(name),
                revision=oid.encode(),
                path=file_path,
                global_options=literal,
            )
            assert response.commit.id == last_commit(path, oid, file_path, literal=True)

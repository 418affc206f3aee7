"""CountCommits, CountDivergingCommits, CommitIsAncestor, CommitStats against the git CLI."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings

from tests.helpers import Client
from tests.repos import EPOCH, FastImport, build_history, git, histories
from tests.rpc.services.test_commit_history_common import (
    FORMATS,
    SERVICE,
    empty,
    repo_path,
    repository,
    rich,
    thread_client,  # noqa: F401  (a fixture)
)
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import commit_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

REPO = repository("rich.git")


async def count(client: Client, **fields: object) -> int:
    request = pb.CountCommitsRequest(repository=fields.pop("repository", REPO), **fields)  # type: ignore[arg-type]
    response = await client.unary(SERVICE + "CountCommits", request, pb.CountCommitsResponse)
    return int(response.count)


def git_count(path: str, *args: str) -> int:
    return int(git(path, "rev-list", "--count", *args).decode())


# -- CountCommits ------------------------------------------------------------------------


@pytest.mark.parametrize("object_format", FORMATS)
async def test_count_commits_matches_rev_list(
    client: Client, config: Config, object_format: str
) -> None:
    path, oids = rich(config, object_format)
    for revision in ["main", "feature", "HEAD", "v1.0.0", "ünicode-branch", oids["merge"]]:
        assert await count(client, revision=revision.encode()) == git_count(path, revision)
    assert await count(client, all=True) == git_count(path, "--all")
    # With `all`, the revision is not used at all.
    assert await count(client, all=True, revision=b"feature") == git_count(path, "--all")
    assert await count(client, revision=b"main", max_count=3) == 3
    assert await count(client, revision=b"main", first_parent=True) == git_count(
        path, "--first-parent", "main"
    )
    assert await count(client, revision=b"main", path=b"docs") == git_count(
        path, "main", "--", "docs"
    )
    assert await count(client, revision=b"feature..main") == git_count(path, "feature..main")


async def test_count_commits_dates_and_paths(client: Client, config: Config) -> None:
    path, _ = rich(config)
    before = Timestamp(seconds=EPOCH + 240)
    after = Timestamp(seconds=EPOCH + 120)
    assert await count(client, revision=b"main", before=before) == git_count(
        path, f"--before={EPOCH + 240}", "main"
    )
    assert await count(client, revision=b"main", after=after) == git_count(
        path, f"--after={EPOCH + 120}", "main"
    )
    assert await count(client, revision=b"main", after=after, before=before) == git_count(
        path, f"--after={EPOCH + 120}", f"--before={EPOCH + 240}", "main"
    )
    # A pathspec with a wildcard matches as git matches it, unless taken literally.
    assert await count(client, revision=b"main", path=b"docs/*.md") == git_count(
        path, "main", "--", "docs/*.md"
    )
    assert await count(client, revision=b"main", path=b"docs/*.md") > 0
    literal = shared_pb2.GlobalOptions(literal_pathspecs=True)
    assert await count(client, revision=b"main", path=b"docs/*.md", global_options=literal) == 0
    assert await count(client, revision=b"main", path=b"caf\xe9.txt") == 1


async def test_count_commits_unknown_revision_is_zero(client: Client, config: Config) -> None:
    rich(config)
    assert await count(client, revision=b"does-not-exist") == 0
    empty(config)
    assert await count(client, repository=repository("empty.git"), revision=b"main") == 0
    assert await count(client, repository=repository("empty.git"), all=True) == 0


@given(history=histories())
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_count_commits_random_histories(
    thread_client: Client,  # noqa: F811  (the fixture)
    config: Config,
    history: list[Any],
) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = repo_path(config, name)
    build_history(path, history)
    for ref in git(path, "for-each-ref", "--format=%(refname)").decode().split():
        for first_parent in (False, True):
            extra = ["--first-parent"] if first_parent else []
            got = await count(
                thread_client,
                repository=repository(name),
                revision=ref.encode(),
                first_parent=first_parent,
            )
            assert got == git_count(path, *extra, ref)
    everything = await count(thread_client, repository=repository(name), all=True)
    assert everything == git_count(path, "--all")


async def test_count_commits_errors(client: Client, config: Config) -> None:
    empty(config, "rich.git")
    cases = [
        ({"repository": None, "revision": b"main"}, grpc.StatusCode.INVALID_ARGUMENT,
         "repository not set"),
        ({"repository": shared_pb2.Repository(storage_name="fake", relative_path="x.git")},
         grpc.StatusCode.INVALID_ARGUMENT, "storage name not found"),
        ({"repository": repository("missing.git"), "revision": b"main"},
         grpc.StatusCode.NOT_FOUND, "repository not found"),
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "empty Revision and false All"),
        ({"revision": b"--output=/meow"}, grpc.StatusCode.INVALID_ARGUMENT,
         "revision can't start with '-'"),
        ({"revision": b"--output=/meow", "all": True}, grpc.StatusCode.INVALID_ARGUMENT,
         "revision can't start with '-'"),
        ({"revision": b"a b"}, grpc.StatusCode.INVALID_ARGUMENT,
         "revision can't contain whitespace"),
    ]  # fmt: skip
    for fields, code, message in cases:
        request = pb.CountCommitsRequest(**{"repository": REPO, **fields})
        error = await client.error(SERVICE + "CountCommits", request, pb.CountCommitsResponse)
        assert (error.code(), error.details()) == (code, message), fields


# -- CountDivergingCommits ---------------------------------------------------------------


async def diverging(
    client: Client, source: bytes, to: bytes, max_count: int = 0
) -> tuple[int, int]:
    request = pb.CountDivergingCommitsRequest(repository=REPO, to=to, max_count=max_count)
    setattr(request, "from", source)
    response = await client.unary(
        SERVICE + "CountDivergingCommits", request, pb.CountDivergingCommitsResponse
    )
    return int(response.left_count), int(response.right_count)


@pytest.mark.parametrize("object_format", FORMATS)
async def test_count_diverging_commits_matches_rev_list(
    client: Client, config: Config, object_format: str
) -> None:
    path, oids = rich(config, object_format)
    pairs = [
        ("main", "feature"),
        ("feature", "main"),
        ("ünicode-branch", "main"),
        (oids["latin1"], oids["feature"]),
        ("main", "main"),
        ("v1.0.0", "v2.0.0"),
    ]
    for left, right in pairs:
        expected = git(path, "rev-list", "--count", "--left-right", f"{left}...{right}").split()
        assert await diverging(client, left.encode(), right.encode()) == (
            int(expected[0]),
            int(expected[1]),
        )
    # --max-count stops the walk early, whichever side the commits are on.
    left, right = await diverging(client, oids["root"].encode(), b"main", max_count=2)
    assert left + right == 2


async def test_count_diverging_commits_errors(client: Client, config: Config) -> None:
    rich(config)
    for source, to in [(b"", b"main"), (b"main", b""), (b"", b"")]:
        request = pb.CountDivergingCommitsRequest(repository=REPO, to=to)
        setattr(request, "from", source)
        error = await client.error(
            SERVICE + "CountDivergingCommits", request, pb.CountDivergingCommitsResponse
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "from and to are both required"
    # "from and to" is checked before the repository, as in Gitaly.
    request = pb.CountDivergingCommitsRequest(repository=None, to=b"main")
    error = await client.error(
        SERVICE + "CountDivergingCommits", request, pb.CountDivergingCommitsResponse
    )
    assert error.details() == "from and to are both required"
    request = pb.CountDivergingCommitsRequest(repository=None, to=b"main")
    setattr(request, "from", b"feature")
    error = await client.error(
        SERVICE + "CountDivergingCommits", request, pb.CountDivergingCommitsResponse
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "repository not set",
    )
    # An option smuggled in through `from` is refused before git runs.
    request = pb.CountDivergingCommitsRequest(repository=REPO, to=b"main")
    setattr(request, "from", b"--output=/tmp/x")
    error = await client.error(
        SERVICE + "CountDivergingCommits", request, pb.CountDivergingCommitsResponse
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "git rev-list cmd: validating positional argument: revision can't start with '-'",
    )
    # An unknown revision is git's failure: INTERNAL.
    request = pb.CountDivergingCommitsRequest(repository=REPO, to=b"main")
    setattr(request, "from", b"does-not-exist")
    error = await client.error(
        SERVICE + "CountDivergingCommits", request, pb.CountDivergingCommitsResponse
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INTERNAL,
        "gi rev-list error: exit status 128",
    )


# -- CommitIsAncestor --------------------------------------------------------------------


async def is_ancestor(
    client: Client, ancestor: str, child: str, repo: shared_pb2.Repository = REPO
) -> bool:
    request = pb.CommitIsAncestorRequest(repository=repo, ancestor_id=ancestor, child_id=child)
    response = await client.unary(
        SERVICE + "CommitIsAncestor", request, pb.CommitIsAncestorResponse
    )
    return bool(response.value)


def git_is_ancestor(path: str, ancestor: str, child: str) -> bool:
    result = subprocess.run(
        ["git", "-C", path, "merge-base", "--is-ancestor", ancestor, child],
        capture_output=True,
        env={**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"},
    )
    return result.returncode == 0


@pytest.mark.parametrize("object_format", FORMATS)
async def test_commit_is_ancestor_matches_merge_base(
    client: Client, config: Config, object_format: str
) -> None:
    path, oids = rich(config, object_format)
    empty_tree = git(path, "hash-object", "-t", "tree", "/dev/null").decode().strip()
    names = [
        *(oids[name] for name in ("root", "feature", "latin1", "merge", "submodule")),
        "v1.0.0",
        "does-not-exist",
        empty_tree,
    ]
    for ancestor in names:
        for child in names:
            expected = git_is_ancestor(path, ancestor, child)
            assert await is_ancestor(client, ancestor, child) == expected, (ancestor, child)
    assert await is_ancestor(client, oids["root"], oids["submodule"])
    assert not await is_ancestor(client, oids["feature"], oids["latin1"])


async def test_commit_is_ancestor_with_alternates(client: Client, config: Config) -> None:
    path = empty(config, "alt.git")
    build = FastImport()
    base = build.commit("refs/heads/main", b"base\n", {b"a": b"a"}, parents=[])
    build.commit("refs/heads/main", b"child\n", {b"a": b"b"})
    # The objects live only in an alternate directory inside the repository.
    other = repo_path(config, "source.git")
    marks = build.run(other)
    alt_dir = os.path.join(path, "alt-objects")
    os.makedirs(alt_dir)
    git(other, "repack", "-a", "-d", "-q")
    for name in os.listdir(os.path.join(other, "objects", "pack")):
        os.makedirs(os.path.join(alt_dir, "pack"), exist_ok=True)
        os.link(os.path.join(other, "objects", "pack", name), os.path.join(alt_dir, "pack", name))
    ancestor, child = marks[base], git(other, "rev-parse", "main").decode().strip()
    with_alt = repository("alt.git", git_alternate_object_directories=["alt-objects"])
    assert await is_ancestor(client, ancestor, child, with_alt)
    assert not await is_ancestor(client, ancestor, child, repository("alt.git"))


async def test_commit_is_ancestor_errors(client: Client, config: Config) -> None:
    _, oids = rich(config)
    cases = [
        (pb.CommitIsAncestorRequest(repository=None, ancestor_id="a", child_id="b"),
         grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (pb.CommitIsAncestorRequest(repository=REPO, ancestor_id="", child_id="b"),
         grpc.StatusCode.INVALID_ARGUMENT, "empty ancestor sha"),
        (pb.CommitIsAncestorRequest(repository=REPO, ancestor_id="a", child_id=""),
         grpc.StatusCode.INVALID_ARGUMENT, "empty child sha"),
        (pb.CommitIsAncestorRequest(repository=repository("no.git"), ancestor_id="a", child_id="b"),
         grpc.StatusCode.NOT_FOUND, "repository not found"),
        (pb.CommitIsAncestorRequest(repository=REPO, ancestor_id="--all", child_id=oids["merge"]),
         grpc.StatusCode.INTERNAL,
         "positional arg \"--all\" cannot start with dash '-': invalid argument"),
    ]  # fmt: skip
    for request, code, message in cases:
        error = await client.error(
            SERVICE + "CommitIsAncestor", request, pb.CommitIsAncestorResponse
        )
        assert (error.code(), error.details()) == (code, message)


# -- CommitStats -------------------------------------------------------------------------


def git_stats(path: str, oid: str) -> tuple[int, int, int]:
    parents = git(path, "rev-list", "--parents", "-n1", oid).split()[1:]
    if parents:
        base = f"{oid}^"
    else:
        base = git(path, "hash-object", "-t", "tree", "/dev/null").decode().strip()
    additions = deletions = files = 0
    for line in git(path, "diff", "--numstat", base, oid).splitlines():
        added, deleted, _ = line.split(b"\t", 2)
        files += 1
        if added != b"-":
            additions += int(added)
            deletions += int(deleted)
    return additions, deletions, files


@pytest.mark.parametrize("object_format", FORMATS)
async def test_commit_stats_matches_numstat(
    client: Client, config: Config, object_format: str
) -> None:
    path, oids = rich(config, object_format)
    for name, oid in oids.items():
        for revision in {oid, name if name in ("feature",) else oid}:
            response = await client.unary(
                SERVICE + "CommitStats",
                pb.CommitStatsRequest(repository=REPO, revision=revision.encode()),
                pb.CommitStatsResponse,
            )
            expected = git_stats(path, oid)
            assert response.oid == oid
            assert (response.additions, response.deletions, response.files) == expected, name
    # A tag is peeled to its commit; the second commit adds a binary file (no lines).
    response = await client.unary(
        SERVICE + "CommitStats",
        pb.CommitStatsRequest(repository=REPO, revision=b"v1.0.0"),
        pb.CommitStatsResponse,
    )
    assert response.oid == oids["second"]
    assert response.files == 5
    # The rename is detected, as git diff does by default: one file, nothing changed.
    response = await client.unary(
        SERVICE + "CommitStats",
        pb.CommitStatsRequest(repository=REPO, revision=oids["renamed"].encode()),
        pb.CommitStatsResponse,
    )
    assert (response.additions, response.deletions, response.files) == (0, 0, 1)


async def test_commit_stats_errors(client: Client, config: Config) -> None:
    rich(config)
    cases = [
        (pb.CommitStatsRequest(repository=None, revision=b"main"),
         grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (pb.CommitStatsRequest(repository=repository("bar.git"), revision=b"main"),
         grpc.StatusCode.NOT_FOUND, "repository not found"),
        (pb.CommitStatsRequest(repository=REPO, revision=b"non/existing"),
         grpc.StatusCode.INTERNAL, "object not found"),
        (pb.CommitStatsRequest(repository=REPO, revision=b"--outpu=/meow"),
         grpc.StatusCode.INVALID_ARGUMENT, "revision can't start with '-'"),
        (pb.CommitStatsRequest(repository=REPO, revision=b""),
         grpc.StatusCode.INVALID_ARGUMENT, "empty revision"),
        (pb.CommitStatsRequest(repository=REPO, revision=b"main:README.md"),
         grpc.StatusCode.INVALID_ARGUMENT, "revision can't contain ':'"),
    ]  # fmt: skip
    for request, code, message in cases:
        error = await client.error(SERVICE + "CommitStats", request, pb.CommitStatsResponse)
        assert (error.code(), error.details()) == (code, message)

"""ListCommits against `git rev-list`, ListAllCommits against `git cat-file
--batch-all-objects`, quarantine directories included."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings

from tests.helpers import Client
from tests.repos import EPOCH, GIT_ENV, FastImport, build_history, git, histories
from tests.rpc.services.test_commit_history_common import (
    FORMATS,
    SERVICE,
    empty,
    expected_commits,
    flatten,
    ids,
    lines,
    repo_path,
    repository,
    rich,
    thread_client,  # noqa: F401  (a fixture)
)
from trio_gitaly.config import Config
from trio_gitaly.git.revlist import go_time_string, go_timestamp_text, rfc3339_utc
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.gen.gitaly import commit_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

REPO = repository("rich.git")


async def list_commits(client: Client, **fields: Any) -> list[shared_pb2.GitCommit]:
    fields.setdefault("repository", REPO)
    responses = await client.stream(
        SERVICE + "ListCommits", pb.ListCommitsRequest(**fields), pb.ListCommitsResponse
    )
    return flatten(responses)


async def list_all(client: Client, **fields: Any) -> list[shared_pb2.GitCommit]:
    fields.setdefault("repository", REPO)
    responses = await client.stream(
        SERVICE + "ListAllCommits", pb.ListAllCommitsRequest(**fields), pb.ListAllCommitsResponse
    )
    return flatten(responses)


def rev_list(path: str, *args: str) -> list[str]:
    return lines(path, "rev-list", *args)


def page(limit: int = 0, token: str = "") -> shared_pb2.PaginationParameter:
    return shared_pb2.PaginationParameter(limit=limit, page_token=token)


# -- ListCommits -------------------------------------------------------------------------


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_commits_matches_rev_list(
    client: Client, config: Config, object_format: str
) -> None:
    path, oids = rich(config, object_format)
    second = oids["second"]
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"revisions": ["main"]}, ["main"]),
        ({"revisions": [oids["merge"], "feature"]}, [oids["merge"], "feature"]),
        ({"revisions": ["^" + second, "main"]}, ["^" + second, "main"]),
        ({"revisions": [f"{second}..main"], "reverse": True}, ["--reverse", f"{second}..main"]),
        ({"revisions": ["main"], "order": pb.ListCommitsRequest.TOPO}, ["--topo-order", "main"]),
        ({"revisions": ["main"], "order": pb.ListCommitsRequest.DATE}, ["--date-order", "main"]),
        ({"revisions": ["main", "--not", "--all"]}, ["main", "--not", "--all"]),
        ({"revisions": ["main", "--not", "feature"]}, ["main", "--not", "feature"]),
        ({"revisions": ["--not", "feature", "--not", "main"]},
         ["--not", "feature", "--not", "main"]),
        ({"revisions": ["--all"]}, ["--all"]),
        ({"revisions": ["--branches", "--not", "--tags"]}, ["--branches", "--not", "--tags"]),
        ({"revisions": ["--glob=refs/heads/f*"]}, ["--glob=refs/heads/f*"]),
        ({"revisions": ["--tags=v1*"]}, ["--tags=v1*"]),
        ({"revisions": ["main"], "max_parents": 1}, ["--max-parents=1", "main"]),
        ({"revisions": ["main", "feature"], "disable_walk": True},
         ["--no-walk", "main", "feature"]),
        ({"revisions": ["main"], "first_parent": True}, ["--first-parent", "main"]),
        ({"revisions": ["main"], "author": b"Ren"}, ["--author=Ren", "main"]),
        ({"revisions": ["main"], "commit_message_patterns": [b"Add", b"Rename"]},
         ["--grep=Add", "--grep=Rename", "main"]),
        ({"revisions": ["main"], "commit_message_patterns": [b"add"], "ignore_case": True},
         ["--regexp-ignore-case", "--grep=add", "main"]),
        ({"revisions": ["main"], "commit_message_patterns": [b"add"]}, ["--grep=add", "main"]),
        ({"revisions": ["main"], "skip": 2}, ["--skip=2", "main"]),
        ({"revisions": ["main"], "after": Timestamp(seconds=EPOCH + 120),
          "before": Timestamp(seconds=EPOCH + 300)},
         [f"--after={EPOCH + 120}", f"--before={EPOCH + 300}", "main"]),
        ({"revisions": ["main"], "before": Timestamp(seconds=EPOCH + 240, nanos=5)},
         [f"--before={EPOCH + 240}", "main"]),
        ({"revisions": ["v1.0.0", "lightweight"]}, ["v1.0.0", "lightweight"]),
    ]  # fmt: skip
    for fields, args in cases:
        expected = rev_list(path, *args)
        found = await list_commits(client, **fields)
        assert found == expected_commits(path, expected), fields
    assert await list_commits(client, revisions=["main", "--not", "--all"]) == []


async def test_list_commits_dates_as_gitaly_writes_them(client: Client, config: Config) -> None:
    """Committer dates around the bounds, including fractions of a second."""
    path = repo_path(config, "dates.git")
    build = FastImport()
    build.commit("refs/heads/main", b"a\n", {b"a": b"a"}, parents=[])
    for index in range(4):
        build.commit("refs/heads/main", f"{index}\n".encode(), {b"a": str(index).encode()})
    build.run(path)
    dates = [int(x) for x in lines(path, "log", "--format=%ct", "main")]
    middle = dates[2]
    for stamp, flag in [
        (Timestamp(seconds=middle), "before"),
        (Timestamp(seconds=middle, nanos=999_999_999), "before"),
        (Timestamp(seconds=middle), "after"),
        (Timestamp(seconds=middle - 1, nanos=1), "after"),
    ]:
        expected = rev_list(path, f"--{flag}={stamp.seconds}", "main")
        found = await list_commits(
            client, repository=repository("dates.git"), revisions=["main"], **{flag: stamp}
        )
        assert ids(found) == expected, (stamp, flag)
    # The zero time of Go (0001-01-01) is no bound at all, as in Gitaly.
    zero = Timestamp(seconds=-62135596800)
    found = await list_commits(
        client, repository=repository("dates.git"), revisions=["main"], before=zero
    )
    assert ids(found) == rev_list(path, "main")


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_commits_pagination(client: Client, config: Config, object_format: str) -> None:
    path, oids = rich(config, object_format)
    everything = rev_list(path, "--all")
    assert (
        ids(await list_commits(client, revisions=["--all"], pagination_params=page(2)))
        == (everything[:2])
    )
    # A limit of zero (or less) is no limit here (Gitaly's rule for these RPCs).
    for limit in (0, -1):
        found = await list_commits(client, revisions=["--all"], pagination_params=page(limit))
        assert ids(found) == everything
    # Walking page by page, each token the last id of the previous page, gives it all.
    for size in (1, 3):
        collected: list[str] = []
        token = ""
        while True:
            found = await list_commits(
                client, revisions=["--all"], pagination_params=page(size, token)
            )
            if not found:
                break
            assert len(found) <= size
            collected += ids(found)
            token = found[-1].id
        assert collected == everything
    # Everything after the token, without a limit; a token never seen gives nothing.
    token = oids["latin1"]
    after = everything[everything.index(token) + 1 :]
    assert ids(
        await list_commits(client, revisions=["--all"], pagination_params=page(0, token))
    ) == (after)
    unseen = await list_commits(client, revisions=["--all"], pagination_params=page(0, "f" * 40))
    assert unseen == []


async def test_list_commits_errors(client: Client, config: Config) -> None:
    path, _ = rich(config)
    cases = [
        ({"repository": None, "revisions": ["main"]}, grpc.StatusCode.INVALID_ARGUMENT,
         "repository not set"),
        ({"repository": repository("gone.git"), "revisions": ["main"]}, grpc.StatusCode.NOT_FOUND,
         "repository not found"),
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "missing revisions"),
        ({"revisions": ["asdf", "-invalid"]}, grpc.StatusCode.INVALID_ARGUMENT,
         "invalid revision: revision can't start with '-'"),
        ({"revisions": ["--output=/tmp/x"]}, grpc.StatusCode.INVALID_ARGUMENT,
         "invalid revision: revision can't start with '-'"),
        ({"revisions": ["ma in"]}, grpc.StatusCode.INVALID_ARGUMENT,
         "invalid revision: revision can't contain whitespace"),
        ({"revisions": ["main:README.md"]}, grpc.StatusCode.INVALID_ARGUMENT,
         "invalid revision: revision can't contain ':'"),
    ]  # fmt: skip
    for fields, code, message in cases:
        request = pb.ListCommitsRequest(**{"repository": REPO, **fields})
        error = await client.stream_error(SERVICE + "ListCommits", request, pb.ListCommitsResponse)
        assert (error.code(), error.details()) == (code, message), fields
    # A revision git does not know: INTERNAL with rev-list's complaint, as Gitaly words it.
    for revisions in (["does-not-exist"], ["main", "--not", "nope"], ["^nope", "main"]):
        failed = subprocess.run(
            ["git", "-C", path, "rev-list", *revisions], env=GIT_ENV, capture_output=True
        )
        assert failed.returncode == 128
        error = await client.stream_error(
            SERVICE + "ListCommits",
            pb.ListCommitsRequest(repository=REPO, revisions=revisions),
            pb.ListCommitsResponse,
        )
        assert error.code() == grpc.StatusCode.INTERNAL
        assert error.details() == (
            "iterating objects: rev-list pipeline command: exit status 128, "
            f"stderr: {go_quote(failed.stderr)}"
        )


@given(history=histories())
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_list_commits_random_histories(
    thread_client: Client,  # noqa: F811  (the fixture)
    config: Config,
    history: list[Any],
) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = repo_path(config, name)
    build_history(path, history)
    repo = repository(name)
    refs = set(lines(path, "for-each-ref", "--format=%(refname)"))
    for revisions, flags, fields in [
        (["--all"], [], {}),
        (["--all"], ["--topo-order", "--reverse"],
         {"order": pb.ListCommitsRequest.TOPO, "reverse": True}),
        (["refs/heads/main", "--not", "refs/heads/topic"], ["--max-parents=1"],
         {"max_parents": 1}),
        (["HEAD"], ["--date-order", "--first-parent"],
         {"order": pb.ListCommitsRequest.DATE, "first_parent": True}),
    ]:  # fmt: skip
        if any(r.startswith("refs/") and r not in refs for r in revisions):
            continue
        found = await list_commits(thread_client, repository=repo, revisions=revisions, **fields)
        assert found == expected_commits(path, rev_list(path, *flags, *revisions)), fields
    shutil.rmtree(path)


# -- ListAllCommits ----------------------------------------------------------------------


def all_commits(path: str, env: dict[str, str] | None = None) -> list[str]:
    """Commit ids as `git cat-file --batch-all-objects --unordered` lists them."""
    out = subprocess.run(
        ["git", "-C", path, "cat-file", "--batch-all-objects", "--batch-check", "--unordered"],
        env={**GIT_ENV, **(env or {})},
        capture_output=True,
        check=True,
    ).stdout
    rows = [line.split() for line in out.decode().splitlines()]
    return [row[0] for row in rows if row[1] == "commit"]


def dangling_commit(path: str, message: str, env: dict[str, str] | None = None) -> str:
    """A commit no reference reaches (written as receive-pack would, with `env`)."""
    full_env = {**GIT_ENV, **(env or {})}
    tree = (
        subprocess.run(
            ["git", "-C", path, "mktree"], input=b"", env=full_env, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    return (
        subprocess.run(
            ["git", "-C", path, "commit-tree", "-m", message, tree],
            env=full_env,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_all_commits_matches_cat_file(
    client: Client, config: Config, object_format: str
) -> None:
    path, oids = rich(config, object_format)
    unreachable = dangling_commit(path, "unreachable")
    expected = all_commits(path)
    assert unreachable in expected and set(oids.values()) < set(expected)
    found = await list_all(client)
    assert found == expected_commits(path, expected)
    # Packed objects too: the order is git's, whatever it is.
    git(path, "repack", "-a", "-d", "-q")
    assert await list_all(client) == expected_commits(path, all_commits(path))


async def test_list_all_commits_pagination(client: Client, config: Config) -> None:
    path, _ = rich(config)
    expected = all_commits(path)
    assert ids(await list_all(client, pagination_params=page(1))) == expected[:1]
    assert ids(await list_all(client, pagination_params=page(0))) == expected
    collected: list[str] = []
    token = ""
    while found := await list_all(client, pagination_params=page(2, token)):
        collected += ids(found)
        token = found[-1].id
    assert collected == expected
    # Any object id works as a token: listing resumes after it, whatever its type.
    objects = [
        line.split()[0]
        for line in lines(path, "cat-file", "--batch-all-objects", "--batch-check", "--unordered")
    ]
    blob = next(oid for oid in objects if oid not in expected)
    rest = [oid for oid in objects[objects.index(blob) + 1 :] if oid in expected]
    assert ids(await list_all(client, pagination_params=page(0, blob))) == rest


async def test_list_all_commits_empty_and_errors(client: Client, config: Config) -> None:
    empty(config)
    assert await list_all(client, repository=repository("empty.git")) == []
    for repo, code, message in [
        (None, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (repository("gone.git"), grpc.StatusCode.NOT_FOUND, "repository not found"),
    ]:
        error = await client.stream_error(
            SERVICE + "ListAllCommits",
            pb.ListAllCommitsRequest(repository=repo),
            pb.ListAllCommitsResponse,
        )
        assert (error.code(), error.details()) == (code, message)


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_all_commits_quarantine(
    client: Client, config: Config, object_format: str
) -> None:
    path, oids = rich(config, object_format)
    quarantine = os.path.join("objects", "incoming-123456")
    # An empty quarantine lists nothing, though the repository has commits.
    os.mkdir(os.path.join(path, quarantine))
    quarantined_repo = repository(
        "rich.git", git_object_directory=quarantine, git_alternate_object_directories=[]
    )
    assert await list_all(client, repository=quarantined_repo) == []
    # Objects pushed into the quarantine, as receive-pack writes them.
    env = {
        "GIT_OBJECT_DIRECTORY": os.path.join(path, quarantine),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": os.path.join(path, "objects"),
    }
    pushed = [dangling_commit(path, f"pushed {n}", env) for n in range(3)]
    tip = oids["submodule"]
    child = (
        subprocess.run(
            ["git", "-C", path, "commit-tree", "-p", tip, "-m", "child", f"{tip}^{{tree}}"],
            env={**GIT_ENV, **env},
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    pushed.append(child)
    quarantine_env = {"GIT_OBJECT_DIRECTORY": os.path.join(path, quarantine)}
    expected = all_commits(path, quarantine_env)
    assert sorted(expected) == sorted(set(pushed))
    found = await list_all(client, repository=quarantined_repo)
    assert found == expected_commits(path, expected, env=quarantine_env)
    # Pagination in the quarantine.
    assert (
        ids(await list_all(client, repository=quarantined_repo, pagination_params=page(1)))
        == (expected[:1])
    )
    # Naming the main object directory as an alternate lists both.
    with_main = repository(
        "rich.git", git_object_directory=quarantine, git_alternate_object_directories=["objects"]
    )
    main_objects = os.path.join(path, "objects")
    both = all_commits(path, {**quarantine_env, "GIT_ALTERNATE_OBJECT_DIRECTORIES": main_objects})
    assert ids(await list_all(client, repository=with_main)) == both
    assert set(both) == set(pushed) | set(all_commits(path))
    # The main repository does not see quarantined objects, ListCommits included.
    assert child not in ids(await list_all(client))
    error = await client.stream_error(
        SERVICE + "ListCommits",
        pb.ListCommitsRequest(repository=REPO, revisions=[child]),
        pb.ListCommitsResponse,
    )
    assert error.code() == grpc.StatusCode.INTERNAL
    found = await list_commits(
        client,
        repository=repository(
            "rich.git",
            git_object_directory=quarantine,
            git_alternate_object_directories=["objects"],
        ),
        revisions=[child, "--not", "--all"],
    )
    assert ids(found) == [child]


async def test_list_all_commits_quarantine_escape(client: Client, config: Config) -> None:
    rich(config)
    outside = repository("rich.git", git_object_directory="../../elsewhere")
    error = await client.stream_error(
        SERVICE + "ListAllCommits",
        pb.ListAllCommitsRequest(repository=outside),
        pb.ListAllCommitsResponse,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = repository("rich.git", git_object_directory="objects/incoming-missing")
    error = await client.stream_error(
        SERVICE + "ListAllCommits",
        pb.ListAllCommitsRequest(repository=missing),
        pb.ListAllCommitsResponse,
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_long_history_is_pipelined(client: Client, config: Config) -> None:
    """Walks longer than a pipe's worth of ids, read whole and stopped part way."""
    path = repo_path(config, "long.git")
    build = FastImport()
    build.commit("refs/heads/main", b"c0\n", {b"a": b"0"}, parents=[])
    for index in range(1, 1500):
        build.commit("refs/heads/main", f"c{index}\n".encode(), {b"a": str(index).encode()})
    build.run(path)
    repo = repository("long.git")
    everything = rev_list(path, "main")
    found = await list_commits(client, repository=repo, revisions=["main"])
    assert ids(found) == everything
    assert found[:3] == expected_commits(path, everything[:3])
    # A page in the middle: the walk and the pipe are abandoned after it.
    token = everything[700]
    found = await list_commits(
        client, repository=repo, revisions=["main"], pagination_params=page(200, token)
    )
    assert ids(found) == everything[701:901]
    found = await list_all(client, repository=repo, pagination_params=page(300))
    assert ids(found) == all_commits(path)[:300]
    assert sorted(ids(await list_all(client, repository=repo))) == sorted(everything)


def test_command_line_dates_are_gitalys() -> None:
    """Dates are written as Go prints them: Timestamp.String(), time.Time.String()."""
    assert go_timestamp_text(1700000000, 0) == "seconds:1700000000"
    assert go_timestamp_text(1700000000, 5) == "seconds:1700000000 nanos:5"
    assert go_timestamp_text(0, 0) == ""
    assert go_time_string(1009846861, 1) == "2002-01-01 01:01:01.000000001 +0000 UTC"
    assert go_time_string(1009846861, 500_000_000) == "2002-01-01 01:01:01.5 +0000 UTC"
    assert go_time_string(1009846861, 0) == "2002-01-01 01:01:01 +0000 UTC"
    assert go_time_string(-62135596800, 0) is None
    assert rfc3339_utc(1700000000) == "2023-11-14T22:13:20Z"

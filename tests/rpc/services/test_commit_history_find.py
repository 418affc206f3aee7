"""FindCommit and FindCommits against `git cat-file` and `git log` on the same repository."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings

from tests.helpers import Client, error_detail
from tests.repos import EPOCH, GIT_ENV, FastImport, Person, build_history, git, histories
from tests.rpc.services.test_commit_history_common import (
    FORMATS,
    SERVICE,
    empty,
    expected_commit,
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
from trio_gitaly.rpc.gen.gitaly import commit_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2
from trio_gitaly.rpc.gitproto import MAX_MESSAGE_BYTES

REPO = repository("rich.git")
UNLIMITED = 9000


async def find_commit(
    client: Client, revision: bytes, *, trailers: bool = False, repo: shared_pb2.Repository = REPO
) -> shared_pb2.GitCommit | None:
    request = pb.FindCommitRequest(repository=repo, revision=revision, trailers=trailers)
    response = await client.unary(SERVICE + "FindCommit", request, pb.FindCommitResponse)
    return response.commit if response.HasField("commit") else None


async def find_commits(client: Client, **fields: Any) -> list[shared_pb2.GitCommit]:
    fields.setdefault("repository", REPO)
    responses = await client.stream(
        SERVICE + "FindCommits", pb.FindCommitsRequest(**fields), pb.FindCommitsResponse
    )
    return flatten(responses)


def git_log(path: str, *args: str) -> list[str]:
    """Commit ids as `git log` lists them."""
    return lines(path, "log", "--format=%H", *args)


# -- FindCommit --------------------------------------------------------------------------


@pytest.mark.parametrize("object_format", FORMATS)
async def test_find_commit_matches_cat_file(
    client: Client, config: Config, object_format: str
) -> None:
    path, oids = rich(config, object_format)
    names = [
        *oids.values(),
        "main",
        "HEAD",
        "feature",
        "refs/heads/feature",
        "v1.0.0",
        "v1.0.0-nested",
        "lightweight",
        "ünicode-branch",
        "main~2",
        "main~1^2",
        oids["merge"][:10],
    ]
    for name in names:
        oid = git(path, "rev-parse", f"{name}^{{commit}}").decode().strip()
        for trailers in (False, True):
            found = await find_commit(client, name.encode(), trailers=trailers)
            assert found == expected_commit(path, oid, trailers=trailers), name
    # Fields cross-checked with git's own formatting of the commit.
    for oid in oids.values():
        found = await find_commit(client, oid.encode())
        assert found is not None
        fields = git(
            path,
            "log",
            "-1",
            "--encoding=none",
            "--format=%T%x00%P%x00%an%x00%ae%x00%at%x00%cn",
            oid,
        ).split(b"\x00")
        tree, parents, name, email, date, committer = fields
        assert found.tree_id == tree.decode()
        assert list(found.parent_ids) == parents.decode().split()
        if not found.encoding:  # git log re-encodes names of other encodings to UTF-8
            assert found.author.name == name
        assert found.author.email == email
        assert found.author.date.seconds == int(date)
        if not found.encoding:
            assert found.committer.name == committer.strip()
    second = await find_commit(client, oids["second"].encode(), trailers=True)
    assert second is not None
    assert [(t.key, t.value) for t in second.trailers] == [
        (b"Signed-off-by", b"A U Thor <author@example.com>")
    ]
    latin1 = await find_commit(client, oids["latin1"].encode())
    assert latin1 is not None
    assert (latin1.encoding, latin1.subject) == ("ISO-8859-1", b"Caf\xe9 na\xefve message")


async def test_find_commit_big_message_and_identities(client: Client, config: Config) -> None:
    path = repo_path(config, "big.git")
    build = FastImport()
    message = b"An empty commit with REALLY BIG message\n\n" + b"MOAR!\n" * 20 * 1024
    big = build.commit("refs/heads/main", message, {b"a": b"a"}, parents=[])
    build.commit(
        "refs/heads/main",
        b"subject only",
        {b"a": b"b"},
        author=Person(b"author", b"a@example.com", b"+0130"),
        committer=Person(b"committer", b"c@example.com", b"-0700"),
    )
    marks = build.run(path)
    found = await find_commit(client, marks[big].encode(), repo=repository("big.git"))
    assert found is not None
    assert found.body == message[:MAX_MESSAGE_BYTES]
    assert found.body_size == len(message)
    assert found == expected_commit(path, marks[big])
    found = await find_commit(client, b"main", repo=repository("big.git"))
    assert found is not None
    assert (found.author.name, found.author.timezone) == (b"author", b"+0130")
    assert (found.committer.name, found.committer.timezone) == (b"committer", b"-0700")
    assert found.subject == b"subject only"


@pytest.mark.parametrize("object_format", FORMATS)
async def test_find_commit_not_found_is_empty(
    client: Client, config: Config, object_format: str
) -> None:
    path, _ = rich(config, object_format)
    tree = git(path, "rev-parse", "main^{tree}").decode().strip()
    missing = "1" * len(tree)
    # Unknown names, unknown ids, and objects that do not peel to a commit.
    for revision in ["does-not-exist", missing, tree, "blob-tag", "refs/heads/nope"]:
        assert await find_commit(client, revision.encode()) is None, revision
    empty(config)
    assert await find_commit(client, b"main", repo=repository("empty.git")) is None
    assert await find_commit(client, b"HEAD", repo=repository("empty.git")) is None


async def test_find_commit_errors(client: Client, config: Config) -> None:
    rich(config)
    cases = [
        (None, b"main", grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (shared_pb2.Repository(storage_name="fake", relative_path="path"), b"main",
         grpc.StatusCode.INVALID_ARGUMENT, "storage name not found"),
        (repository("missing.git"), b"main", grpc.StatusCode.NOT_FOUND, "repository not found"),
        (REPO, b"", grpc.StatusCode.INVALID_ARGUMENT, "empty revision"),
        (REPO, b"-master", grpc.StatusCode.INVALID_ARGUMENT, "revision can't start with '-'"),
        (REPO, b"mas:ter", grpc.StatusCode.INVALID_ARGUMENT, "revision can't contain ':'"),
        (REPO, b"ma ster", grpc.StatusCode.INVALID_ARGUMENT, "revision can't contain whitespace"),
        (REPO, b"ma\x00ster", grpc.StatusCode.INVALID_ARGUMENT, "revision can't contain NUL"),
    ]  # fmt: skip
    for repo, revision, code, message in cases:
        request = pb.FindCommitRequest(repository=repo, revision=revision)
        error = await client.error(SERVICE + "FindCommit", request, pb.FindCommitResponse)
        assert (error.code(), error.details()) == (code, message), revision


# -- FindCommits -------------------------------------------------------------------------


@pytest.mark.parametrize("object_format", FORMATS)
async def test_find_commits_matches_git_log(
    client: Client, config: Config, object_format: str
) -> None:
    path, oids = rich(config, object_format)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"revision": b"main", "limit": UNLIMITED}, ["main"]),
        ({"revision": b"main", "limit": 3}, ["--max-count=3", "main"]),
        ({"revision": b"main", "limit": 3, "offset": 2}, ["--skip=2", "--max-count=3", "main"]),
        ({"revision": b"main", "limit": 0}, ["--max-count=0", "main"]),
        ({"revision": b"main", "limit": -1}, ["main"]),
        ({"revision": b"feature", "limit": UNLIMITED}, ["feature"]),
        ({"revision": b"v1.0.0", "limit": UNLIMITED}, ["v1.0.0"]),
        ({"revision": b"feature..main", "limit": UNLIMITED}, ["feature..main"]),
        ({"revision": b"main", "limit": UNLIMITED, "skip_merges": True}, ["--no-merges", "main"]),
        ({"revision": b"main", "limit": UNLIMITED, "first_parent": True},
         ["--first-parent", "main"]),
        ({"revision": b"main", "limit": UNLIMITED, "order": pb.FindCommitsRequest.TOPO},
         ["--topo-order", "main"]),
        ({"all": True, "limit": UNLIMITED}, ["--all", "--reverse"]),
        ({"all": True, "limit": 2, "offset": 1},
         ["--skip=1", "--max-count=2", "--all", "--reverse"]),
        ({"revision": b"main", "limit": UNLIMITED, "paths": [b"docs"]}, ["main", "--", "docs"]),
        ({"revision": b"main", "limit": UNLIMITED, "paths": [b"docs/*.md"]},
         ["main", "--", "docs/*.md"]),
        ({"revision": b"main", "limit": UNLIMITED, "paths": [b"caf\xe9.txt", b"feature.txt"]},
         ["main", "--", "caf\udce9.txt", "feature.txt"]),
        ({"revision": b"main", "limit": UNLIMITED, "paths": [b"docs/manual.md"], "follow": True},
         ["--follow", "main", "--", "docs/manual.md"]),
        ({"revision": b"main", "limit": UNLIMITED, "author": b"Ren"}, ["--author=Ren", "main"]),
        ({"revision": b"main", "limit": UNLIMITED, "author": b"F\xc3\xa9ature"},
         ["--author=Féature", "main"]),
        ({"revision": b"main", "limit": UNLIMITED, "before": Timestamp(seconds=EPOCH + 240)},
         [f"--before={EPOCH + 240}", "main"]),
        ({"revision": b"main", "limit": UNLIMITED, "after": Timestamp(seconds=EPOCH + 120),
          "before": Timestamp(seconds=EPOCH + 300)},
         [f"--after={EPOCH + 120}", f"--before={EPOCH + 300}", "main"]),
        ({"limit": UNLIMITED}, ["main"]),  # no revision: the default branch (HEAD)
    ]  # fmt: skip
    for fields, args in cases:
        expected = git_log(path, *args)
        for trailers in (False, True):
            found = await find_commits(client, trailers=trailers, **fields)
            assert found == expected_commits(path, expected, trailers=trailers), fields
    assert oids["merge"] in git_log(path, "main")


async def test_find_commits_literal_pathspecs(client: Client, config: Config) -> None:
    path, _ = rich(config)
    wildcard = {"revision": b"main", "limit": UNLIMITED, "paths": [b"docs/*.md"]}
    assert ids(await find_commits(client, **wildcard)) == git_log(path, "main", "--", "docs/*.md")
    literal = shared_pb2.GlobalOptions(literal_pathspecs=True)
    assert await find_commits(client, global_options=literal, **wildcard) == []


async def test_find_commits_follow_with_offset(client: Client, config: Config) -> None:
    path = repo_path(config, "moves.git")
    build = FastImport()
    for index in range(10):
        build.commit(
            "refs/heads/main",
            f"move {index}\n".encode(),
            {str(index).encode(): b"content that is being moved around\n"},
            parents=[] if index == 0 else None,
            deleteall=True,
        )
    build.run(path)
    git(path, "symbolic-ref", "HEAD", "refs/heads/main")
    history = git_log(path, "--follow", "main", "--", "9")
    assert len(history) == 10
    for offset in range(11):
        found = await find_commits(
            client,
            repository=repository("moves.git"),
            revision=b"main",
            paths=[b"9"],
            follow=True,
            offset=offset,
            limit=UNLIMITED,
        )
        assert ids(found) == history[offset:]
    limited = await find_commits(
        client,
        repository=repository("moves.git"),
        revision=b"main",
        paths=[b"9"],
        follow=True,
        offset=3,
        limit=4,
    )
    assert ids(limited) == history[3:7]


@pytest.mark.parametrize("object_format", FORMATS)
async def test_find_commits_shortstat_and_references(
    client: Client, config: Config, object_format: str
) -> None:
    path, oids = rich(config, object_format)
    found = await find_commits(client, revision=b"main", limit=UNLIMITED, include_shortstat=True)
    log = git(path, "log", "--format=%x00%H", "--shortstat", "main").split(b"\x00")[1:]
    stats = {}
    for record in log:
        oid, _, rest = record.partition(b"\n")
        stats[oid.decode()] = rest.strip()
    assert ids(found) == git_log(path, "main")
    for commit in found:
        line = stats[commit.id]
        if not line:
            assert not commit.HasField("short_stats"), commit.id
            continue
        words = line.decode().replace(",", "").split()
        expected = shared_pb2.CommitStatInfo(changed_files=int(words[0]))
        for count, kind in zip(words[3::2], words[4::2], strict=True):
            if kind.startswith("insertion"):
                expected.additions = int(count)
            else:
                expected.deletions = int(count)
        assert commit.short_stats == expected, commit.id
    # The merge has no stats (git log shows no diff for merges).
    assert not next(c for c in found if c.id == oids["merge"]).HasField("short_stats")

    for patterns in ([b"refs/heads/", b"refs/tags"], [b"refs/tags"], [b"HEAD"], [b"refs/heads/m*"]):
        found = await find_commits(
            client, all=True, limit=UNLIMITED, include_referenced_by=patterns
        )
        flags = [f"--decorate-refs={p.decode()}" for p in patterns]
        decorations = lines(
            path, "log", "--all", "--reverse", "--decorate=full", *flags, "--format=%H %D"
        )
        expected_refs = {}
        for line in decorations:
            oid, _, text = line.partition(" ")
            names = []
            for item in filter(None, text.split(", ")):
                item = item.removeprefix("tag: ")
                names += item.split(" -> ")
            expected_refs[oid] = [name.encode() for name in names]
        assert {c.id: list(c.referenced_by) for c in found} == expected_refs
    head = await find_commits(client, revision=b"main", limit=1, include_referenced_by=[b"HEAD"])
    assert list(head[0].referenced_by) == [b"HEAD"]
    both = await find_commits(
        client, revision=b"main", limit=1, include_referenced_by=[b"HEAD", b"refs/heads/"]
    )
    assert list(both[0].referenced_by) == [b"HEAD", b"refs/heads/main"]


async def test_find_commits_default_branch_rules(client: Client, config: Config) -> None:
    # HEAD points at a missing branch: the only branch is used.
    path = repo_path(config, "other.git")
    build = FastImport()
    only = build.commit("refs/heads/non-default", b"only\n", {b"a": b"a"}, parents=[])
    marks = build.run(path)
    git(path, "symbolic-ref", "HEAD", "refs/heads/missing")
    found = await find_commits(client, repository=repository("other.git"), limit=2)
    assert ids(found) == [marks[only]]
    # refs/heads/main wins over other branches when HEAD's target is missing.
    build = FastImport()
    build.commit("refs/heads/a-first", b"a\n", {b"a": b"a"}, parents=[])
    main = build.commit("refs/heads/main", b"main\n", {b"a": b"b"}, parents=[])
    marks = build.run(path)
    found = await find_commits(client, repository=repository("other.git"), limit=UNLIMITED)
    assert ids(found) == [marks[main]]


async def test_find_commits_not_found(client: Client, config: Config) -> None:
    rich(config)
    empty(config)
    zero = "37811987837aacbd3b1d8ceb8de669b33f7c7c0a"
    cases = [
        {"repository": repository("empty.git")},
        {"repository": repository("empty.git"), "revision": b"non-existent"},
        {"repository": repository("empty.git"), "revision": b"x", "paths": [b"some path"]},
        {"revision": b"non-existent", "limit": UNLIMITED},
        {"revision": b"non-existing-ref", "limit": UNLIMITED, "include_shortstat": True},
        {"revision": zero.encode(), "limit": UNLIMITED},
        {"revision": f"{zero}..{zero[:-1]}b".encode(), "limit": UNLIMITED},
        {"revision": b"main", "limit": 0, "paths": [b"x"], "all": False},
    ]
    for fields in cases[:-1]:
        fields.setdefault("repository", REPO)
        error = await client.stream_error(
            SERVICE + "FindCommits", pb.FindCommitsRequest(**fields), pb.FindCommitsResponse
        )
        assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "commits not found")
        assert error_detail(error, pb.FindCommitsError) == pb.FindCommitsError()
    # A path that matches nothing is no error, just no commits.
    assert await find_commits(client, **cases[-1]) == []


async def test_find_commits_errors(client: Client, config: Config) -> None:
    rich(config)
    cases = [
        ({"repository": None}, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        ({"paths": [b""]}, grpc.StatusCode.INVALID_ARGUMENT, "path is empty string"),
        ({"paths": [b"a", b""]}, grpc.StatusCode.INVALID_ARGUMENT, "path is empty string"),
        ({"revision": b"--output=/meow"}, grpc.StatusCode.INVALID_ARGUMENT,
         "revision can't start with '-'"),
        ({"revision": b"a:b"}, grpc.StatusCode.INVALID_ARGUMENT, "revision can't contain ':'"),
        # git refuses --follow with two paths: an error Gitaly does not recognise.
        ({"revision": b"main", "limit": 5, "follow": True, "paths": [b"a", b"b"]},
         grpc.StatusCode.INTERNAL, "listing commits failed"),
    ]  # fmt: skip
    for fields, code, message in cases:
        request = pb.FindCommitsRequest(**{"repository": REPO, **fields})
        error = await client.stream_error(SERVICE + "FindCommits", request, pb.FindCommitsResponse)
        assert (error.code(), error.details()) == (code, message), fields


async def test_find_commits_alternate_object_directory(client: Client, config: Config) -> None:
    path = empty(config, "quarantined.git")
    alt = os.path.join(path, "alt-objects")
    os.makedirs(alt)
    # Write a commit whose objects only exist in the alternate directory.
    env = {**GIT_ENV, "GIT_OBJECT_DIRECTORY": alt, "GIT_ALTERNATE_OBJECT_DIRECTORIES": ""}
    tree = _run(path, env, "mktree", input=b"").strip()
    commit = _run(path, env, "commit-tree", "-m", "hidden", tree).strip()
    with_alt = repository("quarantined.git", git_alternate_object_directories=["./alt-objects"])
    found = await find_commits(client, repository=with_alt, revision=commit.encode(), limit=1)
    assert ids(found) == [commit]
    error = await client.stream_error(
        SERVICE + "FindCommits",
        pb.FindCommitsRequest(
            repository=repository("quarantined.git"), revision=commit.encode(), limit=1
        ),
        pb.FindCommitsResponse,
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "commits not found")


def _run(path: str, env: dict[str, str], *args: str, input: bytes | None = None) -> str:
    return subprocess.run(
        ["git", "-C", path, *args], env=env, input=input, capture_output=True, check=True
    ).stdout.decode()


@given(history=histories())
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_find_commits_random_histories(
    thread_client: Client,  # noqa: F811  (the fixture)
    config: Config,
    history: list[Any],
) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = repo_path(config, name)
    build_history(path, history)
    repo = repository(name)
    found = await find_commits(thread_client, repository=repo, all=True, limit=UNLIMITED)
    assert found == expected_commits(path, git_log(path, "--all", "--reverse"))
    for fields, args in [
        ({"limit": UNLIMITED}, ["HEAD"]),
        ({"limit": 3, "offset": 1, "first_parent": True},
         ["--skip=1", "--max-count=3", "--first-parent", "HEAD"]),
        ({"limit": UNLIMITED, "order": pb.FindCommitsRequest.TOPO, "skip_merges": True},
         ["--no-merges", "--topo-order", "HEAD"]),
    ]:  # fmt: skip
        found = await find_commits(thread_client, repository=repo, **fields)
        assert ids(found) == git_log(path, *args), fields
    shutil.rmtree(path)


async def test_find_commits_long_history(client: Client, config: Config) -> None:
    """More commits than one pipe holds, with shortstat and references on each."""
    path = repo_path(config, "long.git")
    build = FastImport()
    build.commit("refs/heads/main", b"c0\n", {b"a": b"0"}, parents=[])
    for index in range(1, 1200):
        build.commit("refs/heads/main", f"c{index}\n".encode(), {b"a": str(index).encode()})
    build.run(path)
    git(path, "symbolic-ref", "HEAD", "refs/heads/main")
    repo = repository("long.git")
    history = git_log(path, "main")
    found = await find_commits(
        client,
        repository=repo,
        limit=-1,
        include_shortstat=True,
        include_referenced_by=[b"refs/heads/"],
    )
    assert ids(found) == history
    assert list(found[0].referenced_by) == [b"refs/heads/main"]
    assert all(not c.referenced_by for c in found[1:])
    assert all(c.short_stats.changed_files == 1 for c in found)
    found = await find_commits(client, repository=repo, limit=100, offset=500)
    assert ids(found) == history[500:600]
    assert found == expected_commits(path, history[500:600])

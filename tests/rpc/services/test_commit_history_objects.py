"""CheckObjectsExist, ListCommitsByOid, ListCommitsByRefName and GetCommitMessages
against `git cat-file` on the same repository."""

from __future__ import annotations

import subprocess

import grpc
import pytest
import trio

from tests.helpers import Client
from tests.repos import GIT_ENV, FastImport, git
from tests.rpc.services.test_commit_history_common import (
    FORMATS,
    SERVICE,
    expected_commit,
    flatten,
    repo_path,
    repository,
    rich,
)
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import commit_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2
from trio_gitaly.rpc.gitproto import MAX_MESSAGE_BYTES
from trio_gitaly.rpc.streaming import CHUNK_BYTES

REPO = repository("rich.git")


def exists_in_git(path: str, revision: bytes) -> bool:
    return (
        subprocess.run(
            [b"git", b"-C", path.encode(), b"cat-file", b"-e", revision],
            env=GIT_ENV,
            capture_output=True,
        ).returncode
        == 0
    )


def peeled(path: str, revision: bytes) -> str | None:
    """The commit `revision` peels to, per git, or None."""
    result = subprocess.run(
        [b"git", b"-C", path.encode(), b"rev-parse", b"-q", b"--verify", revision + b"^{commit}"],
        env=GIT_ENV,
        capture_output=True,
    )
    return result.stdout.decode().strip() if result.returncode == 0 else None


# -- CheckObjectsExist -------------------------------------------------------------------


async def check(
    client: Client, requests: list[pb.CheckObjectsExistRequest]
) -> list[tuple[bytes, bool]]:
    responses = await client.stream(
        SERVICE + "CheckObjectsExist", requests, pb.CheckObjectsExistResponse, client_streaming=True
    )
    return [(r.name, r.exists) for r in flatten(responses, "revisions")]


async def check_error(client: Client, requests: list[pb.CheckObjectsExistRequest]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        await check(client, requests)
    return info.value


@pytest.mark.parametrize("object_format", FORMATS)
async def test_check_objects_exist_matches_cat_file(
    client: Client, config: Config, object_format: str
) -> None:
    path, oids = rich(config, object_format)
    tree = git(path, "rev-parse", "main^{tree}").decode().strip()
    names = [
        *(oid.encode() for oid in oids.values()),
        tree.encode(),
        b"main",
        b"feature",
        b"refs/heads/\xc3\xbcnicode-branch",
        b"v1.0.0",
        b"blob-tag",
        b"refs/does/not/exist",
        b"1" * len(tree),
        oids["merge"][:12].encode(),
        b"main:README.md",
        b"main:docs/manual.md",
        b"main:nope",
        b"main:caf\xe9.txt",
        b"main:\xe2\x9c\x93 check.txt",
        b"bar:foo",
        b"main:README.md\nfoo",
        b"main~1^2",
    ]
    results = await check(client, [pb.CheckObjectsExistRequest(repository=REPO, revisions=names)])
    assert results == [(name, exists_in_git(path, name)) for name in names]
    assert dict(results)[b"main:caf\xe9.txt"] and not dict(results)[b"main:nope"]


async def test_check_objects_exist_paths_with_odd_names(client: Client, config: Config) -> None:
    path = repo_path(config, "odd.git")
    build = FastImport()
    files = {name: b"x" for name in (b"bar", b"~bar", b"@bar", b"@", b"bar:none", b"a\nb")}
    build.commit("refs/heads/foo", b"odd names\n", files, parents=[])
    build.run(path)
    names = [
        b"foo:bar",
        b"bar:foo",
        b"bar:foo\nfoo",
        b"foo:~bar",
        b"foo:@bar",
        b"foo:@",
        b"foo:bar:none",
        b"foo:a\nb",
    ]
    repo = repository("odd.git")
    results = dict(
        await check(client, [pb.CheckObjectsExistRequest(repository=repo, revisions=names)])
    )
    assert results == {
        b"foo:bar": True,
        b"bar:foo": False,
        b"bar:foo\nfoo": False,
        b"foo:~bar": True,
        b"foo:@bar": True,
        b"foo:@": True,
        b"foo:bar:none": True,
        b"foo:a\nb": True,
    }


async def test_check_objects_exist_streamed_requests(client: Client, config: Config) -> None:
    _, oids = rich(config)
    requests = [
        pb.CheckObjectsExistRequest(repository=REPO, revisions=[oids["root"].encode()]),
        pb.CheckObjectsExistRequest(revisions=[oids["feature"].encode()]),
        pb.CheckObjectsExistRequest(revisions=[b"refs/does/not/exist"]),
        pb.CheckObjectsExistRequest(),
        pb.CheckObjectsExistRequest(revisions=[oids["merge"].encode(), b"main"]),
    ]
    assert await check(client, requests) == [
        (oids["root"].encode(), True),
        (oids["feature"].encode(), True),
        (b"refs/does/not/exist", False),
        (oids["merge"].encode(), True),
        (b"main", True),
    ]
    # Many revisions: answers come in several messages, all in order.
    many = [oids["root"].encode()] * 30000
    responses = await client.stream(
        SERVICE + "CheckObjectsExist",
        [pb.CheckObjectsExistRequest(repository=REPO, revisions=many)],
        pb.CheckObjectsExistResponse,
        client_streaming=True,
    )
    assert len(responses) > 1
    assert [r.exists for r in flatten(responses, "revisions")] == [True] * 30000
    # A repository but no revisions: nothing to say.
    assert await check(client, [pb.CheckObjectsExistRequest(repository=REPO)]) == []


async def test_check_objects_exist_errors(client: Client, config: Config) -> None:
    _, oids = rich(config)
    cases = [
        ([pb.CheckObjectsExistRequest(repository=None)],
         grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        ([pb.CheckObjectsExistRequest(revisions=[])],
         grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        ([pb.CheckObjectsExistRequest(repository=repository("gone.git"), revisions=[b"main"])],
         grpc.StatusCode.NOT_FOUND, "repository not found"),
        ([pb.CheckObjectsExistRequest(repository=REPO, revisions=[b"-not-a-rev"])],
         grpc.StatusCode.INVALID_ARGUMENT, "invalid revision: revision can't start with '-'"),
        ([pb.CheckObjectsExistRequest(repository=REPO, revisions=[b"a\nb"])],
         grpc.StatusCode.INVALID_ARGUMENT, "invalid revision: revision can't contain whitespace"),
        ([pb.CheckObjectsExistRequest(repository=REPO, revisions=[b"ma\x00in"])],
         grpc.StatusCode.INVALID_ARGUMENT, "invalid revision: revision can't contain NUL"),
        ([pb.CheckObjectsExistRequest(repository=REPO, revisions=[oids["root"].encode()]),
          pb.CheckObjectsExistRequest(revisions=[b"-not-a-rev"])],
         grpc.StatusCode.INVALID_ARGUMENT, "invalid revision: revision can't start with '-'"),
    ]  # fmt: skip
    for requests, code, message in cases:
        error = await check_error(client, requests)
        assert (error.code(), error.details()) == (code, message)


async def test_check_objects_exist_without_requests(client: Client, config: Config) -> None:
    bidi = client.channel.stream_stream(
        SERVICE + "CheckObjectsExist",
        request_serializer=pb.CheckObjectsExistRequest.SerializeToString,
        response_deserializer=pb.CheckObjectsExistResponse.FromString,
    )

    def call() -> list[pb.CheckObjectsExistResponse]:
        return list(bidi(iter(()), timeout=10))

    with pytest.raises(grpc.RpcError) as info:
        await trio.to_thread.run_sync(call)
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INTERNAL, "EOF")


# -- ListCommitsByOid and ListCommitsByRefName -------------------------------------------


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_commits_by_oid(client: Client, config: Config, object_format: str) -> None:
    path, oids = rich(config, object_format)
    tree = git(path, "rev-parse", "main^{tree}").decode().strip()
    queries = [
        *oids.values(),
        oids["merge"][:10],
        oids["feature"][:8],
        "",
        "foobar",
        tree,
        "1" * len(tree),
        "v1.0.0",
        "main",
        "main:README.md",
        "a\nb",
    ]
    responses = await client.stream(
        SERVICE + "ListCommitsByOid",
        pb.ListCommitsByOidRequest(repository=REPO, oid=queries),
        pb.ListCommitsByOidResponse,
    )
    expected = [
        expected_commit(path, oid)
        for query in queries
        if (oid := peeled(path, query.encode())) is not None and query
    ]
    assert flatten(responses) == expected
    assert len(expected) == len(oids) + 4
    # No ids: no commits.
    assert (
        flatten(
            await client.stream(
                SERVICE + "ListCommitsByOid",
                pb.ListCommitsByOidRequest(repository=REPO),
                pb.ListCommitsByOidResponse,
            )
        )
        == []
    )


async def test_list_commits_by_ref_name(client: Client, config: Config) -> None:
    path, oids = rich(config)
    names = [
        b"refs/heads/main",
        b"main",
        b"refs/heads/\xc3\xbcnicode-branch",
        b"refs/tags/v1.0.0",
        b"refs/tags/v1.0.0-nested",
        b"refs/tags/blob-tag",
        b"refs/heads/does-not-exist",
        b"feature",
    ]
    responses = await client.stream(
        SERVICE + "ListCommitsByRefName",
        pb.ListCommitsByRefNameRequest(repository=REPO, ref_names=names),
        pb.ListCommitsByRefNameResponse,
    )
    found = [(item.ref_name, item.commit) for item in flatten(responses, "commit_refs")]
    assert found == [
        (name, expected_commit(path, oid))
        for name in names
        if (oid := peeled(path, name)) is not None
    ]
    assert [name for name, _ in found] == [
        b"refs/heads/main",
        b"main",
        b"refs/heads/\xc3\xbcnicode-branch",
        b"refs/tags/v1.0.0",
        b"refs/tags/v1.0.0-nested",
        b"feature",
    ]
    assert found[0][1].id == oids["submodule"]


@pytest.mark.parametrize(
    ("method", "request_type", "response_type"),
    [
        ("ListCommitsByOid", pb.ListCommitsByOidRequest, pb.ListCommitsByOidResponse),
        ("ListCommitsByRefName", pb.ListCommitsByRefNameRequest, pb.ListCommitsByRefNameResponse),
        ("GetCommitMessages", pb.GetCommitMessagesRequest, pb.GetCommitMessagesResponse),
    ],
)
async def test_lookup_repository_errors(
    client: Client, config: Config, method: str, request_type: type, response_type: type
) -> None:
    rich(config)
    for repo, code, message in [
        (None, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (shared_pb2.Repository(storage_name="fake", relative_path="x.git"),
         grpc.StatusCode.INVALID_ARGUMENT, "storage name not found"),
        (repository("gone.git"), grpc.StatusCode.NOT_FOUND, "repository not found"),
    ]:  # fmt: skip
        error = await client.stream_error(
            SERVICE + method, request_type(repository=repo), response_type
        )
        assert (error.code(), error.details()) == (code, message)


async def test_lookups_refuse_nul(client: Client, config: Config) -> None:
    rich(config)
    error = await client.stream_error(
        SERVICE + "ListCommitsByOid",
        pb.ListCommitsByOidRequest(repository=REPO, oid=["ma\x00in"]),
        pb.ListCommitsByOidResponse,
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "revision must not contain NUL bytes",
    )
    error = await client.stream_error(
        SERVICE + "GetCommitMessages",
        pb.GetCommitMessagesRequest(repository=REPO, commit_ids=["ma\x00in"]),
        pb.GetCommitMessagesResponse,
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "failed to get commit message: revision must not contain NUL bytes",
    )


# -- GetCommitMessages -------------------------------------------------------------------


async def test_get_commit_messages(client: Client, config: Config) -> None:
    path = repo_path(config, "messages.git")
    build = FastImport()
    first_message = b"a\n" * MAX_MESSAGE_BYTES * 2
    second_message = b"b\n" * CHUNK_BYTES  # two chunks of data
    first = build.commit("refs/heads/main", first_message, {b"a": b"1"}, parents=[])
    second = build.commit("refs/heads/main", second_message, {b"a": b"2"})
    no_message = build.commit("refs/heads/main", b"", {b"a": b"3"})
    marks = build.run(path)
    ids = [marks[first], marks[second], marks[no_message], "main~1"]
    responses = await client.stream(
        SERVICE + "GetCommitMessages",
        pb.GetCommitMessagesRequest(repository=repository("messages.git"), commit_ids=ids),
        pb.GetCommitMessagesResponse,
    )
    # Each message: one response with the id (no text), then its text in chunks.
    messages: list[tuple[str, bytes]] = []
    for response in responses:
        if response.commit_id:
            assert not response.message
            messages.append((response.commit_id, b""))
        else:
            assert 0 < len(response.message) <= CHUNK_BYTES
            messages[-1] = (messages[-1][0], messages[-1][1] + response.message)
    raw = {
        oid: git(path, "cat-file", "commit", oid).partition(b"\n\n")[2] for oid in marks.values()
    }
    assert messages == [
        (marks[first], raw[marks[first]]),
        (marks[second], raw[marks[second]]),
        (marks[no_message], b""),
        ("main~1", raw[marks[second]]),
    ]
    assert messages[0][1] == first_message
    assert len(responses) == 2 + 3 + 1 + 3


async def test_get_commit_messages_unknown_commit(client: Client, config: Config) -> None:
    path, oids = rich(config)
    tree = git(path, "rev-parse", "main^{tree}").decode().strip()
    for commit_ids in ([oids["root"], "does-not-exist"], [tree], ["1" * 40]):
        responses_error = await client.stream_error(
            SERVICE + "GetCommitMessages",
            pb.GetCommitMessagesRequest(repository=REPO, commit_ids=commit_ids),
            pb.GetCommitMessagesResponse,
        )
        assert (responses_error.code(), responses_error.details()) == (
            grpc.StatusCode.INTERNAL,
            "failed to get commit message: object not found",
        )

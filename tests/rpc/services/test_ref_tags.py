"""FindAllTags, FindTag and GetTagMessages, compared with `git for-each-ref`, `git tag`
and `git cat-file` on the same repositories."""

from __future__ import annotations

import grpc
import pytest

from tests.helpers import Client, error_detail
from tests.repos import FastImport, Person, git
from tests.rpc.services.test_ref_common import (
    MAX_MESSAGE,
    OBJECT_FORMATS,
    SERVICE,
    assert_status,
    cli_commit,
    cli_tag,
    empty,
    refs,
    rich,
    run,
)
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import ref_pb2, shared_pb2

SortBy = ref_pb2.FindAllTagsRequest.SortBy
TAG_SORTS = [
    (SortBy.REFNAME, shared_pb2.ASCENDING, "refname"),
    (SortBy.REFNAME, shared_pb2.DESCENDING, "-refname"),
    (SortBy.CREATORDATE, shared_pb2.ASCENDING, "creatordate"),
    (SortBy.CREATORDATE, shared_pb2.DESCENDING, "-creatordate"),
    (SortBy.VERSION_REFNAME, shared_pb2.ASCENDING, "version:refname"),
    (SortBy.VERSION_REFNAME, shared_pb2.DESCENDING, "-version:refname"),
]


async def all_tags(
    client: Client, repo: shared_pb2.Repository, **fields: object
) -> list[shared_pb2.Tag]:
    responses = await client.stream(
        SERVICE + "FindAllTags",
        ref_pb2.FindAllTagsRequest(repository=repo, **fields),  # type: ignore[arg-type]
        ref_pb2.FindAllTagsResponse,
    )
    return [tag for response in responses for tag in response.tags]


def tag_names(path: str, *args: str) -> list[bytes]:
    return [name for (name,) in refs(path, "--format=%(refname)", *args, "refs/tags/")]


# -- FindAllTags ---------------------------------------------------------------------------


@pytest.mark.parametrize("object_format", OBJECT_FORMATS)
async def test_all_tags_match_git(client: Client, config: Config, object_format: str) -> None:
    path, repo, oids = rich(config, object_format)
    got = await all_tags(client, repo)
    assert got == [cli_tag(path, name) for name in tag_names(path)]
    by_name = {tag.name: tag for tag in got}
    # Nested tags peel to the commit; tags of blobs and trees have no target commit.
    assert by_name[b"v1.0.0-nested"].target_commit.id == oids["second"]
    assert not by_name[b"blob-tag"].HasField("target_commit")
    assert by_name[b"blob-tag"].message == b"a blob"
    assert by_name[b"tree-light"] == shared_pb2.Tag(
        name=b"tree-light", id=git(path, "rev-parse", "tree-light").decode().strip()
    )
    assert not by_name[b"tree-annotated"].HasField("target_commit")
    assert by_name[b"lightweight"].target_commit.id == oids["renamed"]
    huge = by_name[b"huge-message"]
    assert len(huge.message) == MAX_MESSAGE and huge.message_size == MAX_MESSAGE + 100


async def test_all_tags_sorted_as_for_each_ref(client: Client, config: Config) -> None:
    path, repo, _ = rich(config)
    build = FastImport()
    commit = build.commit("refs/heads/x", b"x\n", {b"x": b"x"}, parents=[])
    for index, name in enumerate(["v1.0", "v1.10", "v1.2", "v1.2-rc1", "v10"]):
        build.annotated_tag(name, commit, name.encode(), tagger=Person(timezone=b"+0100"))
        if index % 2:
            build.ref(f"refs/tags/light-{name}", commit)
    build.run(path)
    for key, direction, sort in TAG_SORTS:
        got = await all_tags(client, repo, sort_by=SortBy(key=key, direction=direction))
        assert [tag.name for tag in got] == [
            name.removeprefix(b"refs/tags/") for name in tag_names(path, f"--sort={sort}")
        ]


@pytest.mark.parametrize(
    ("sort_by", "message"),
    [
        (SortBy(key=-1), "unsupported sorting key: -1"),  # type: ignore[arg-type]
        (SortBy(key=SortBy.REFNAME, direction=-1), "unsupported sorting direction: -1"),  # type: ignore[arg-type]
        (SortBy(key=7, direction=5), "unsupported sorting direction: 5"),  # type: ignore[arg-type]
    ],
)
async def test_all_tags_bad_sort(
    client: Client, config: Config, sort_by: SortBy, message: str
) -> None:
    _, repo = empty(config)
    error = await client.stream_error(
        SERVICE + "FindAllTags",
        ref_pb2.FindAllTagsRequest(repository=repo, sort_by=sort_by),
        ref_pb2.FindAllTagsResponse,
    )
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, message)


async def test_all_tags_empty_repository(client: Client, config: Config) -> None:
    _, repo = empty(config, object_format="sha256")
    assert await all_tags(client, repo) == []


def five_tags(config: Config) -> tuple[str, shared_pb2.Repository]:
    path, repo = empty(config)
    build = FastImport()
    commit = build.commit("refs/heads/main", b"c\n", {b"c": b"c"}, parents=[])
    for index in range(1, 6):
        build.ref(f"refs/tags/v{index}", commit)
    build.run(path)
    return path, repo


@pytest.mark.parametrize(
    ("limit", "token", "direction", "expected"),
    [
        (100, "", shared_pb2.ASCENDING, [1, 2, 3, 4, 5]),
        (2, "", shared_pb2.ASCENDING, [1, 2]),
        (-1, "", shared_pb2.ASCENDING, [1, 2, 3, 4, 5]),
        (0, "", shared_pb2.ASCENDING, []),
        (2, "refs/tags/v2", shared_pb2.ASCENDING, [3, 4]),
        (2, "refs/tags/v4", shared_pb2.DESCENDING, [3, 2]),
        (-1, "refs/tags/v3", shared_pb2.ASCENDING, [4, 5]),
        (3, "refs/tags/v5", shared_pb2.ASCENDING, []),
    ],
)
async def test_all_tags_pagination(
    client: Client, config: Config, limit: int, token: str, direction: int, expected: list[int]
) -> None:
    path, repo = five_tags(config)
    got = await all_tags(
        client,
        repo,
        pagination_params=shared_pb2.PaginationParameter(limit=limit, page_token=token),
        sort_by=SortBy(key=SortBy.REFNAME, direction=direction),
    )
    assert got == [cli_tag(path, f"refs/tags/v{index}".encode()) for index in expected]


@pytest.mark.parametrize(
    ("limit", "token"), [(10, "refs/tags/v9"), (0, "refs/tags/v1"), (10, "v1")]
)
async def test_all_tags_unknown_page_token(
    client: Client, config: Config, limit: int, token: str
) -> None:
    # Upstream's own test: with a limit of 0 even an existing token is never found.
    _, repo = five_tags(config)
    error = await client.stream_error(
        SERVICE + "FindAllTags",
        ref_pb2.FindAllTagsRequest(
            repository=repo,
            pagination_params=shared_pb2.PaginationParameter(limit=limit, page_token=token),
        ),
        ref_pb2.FindAllTagsResponse,
    )
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "could not find page token")


async def test_all_tags_duplicates_and_signed(client: Client, config: Config) -> None:
    path, repo, oids = rich(config)
    tag_oid = git(path, "rev-parse", "v1.0.0").decode().strip()
    git(path, "update-ref", "refs/tags/v1.0.0-dup", tag_oid)
    signed = (
        f"object {oids['root']}\ntype commit\ntag signed-tag\n"
        "tagger Some Author <some.author@example.com> 100000000 +0100\n\n"
        "signed tag message\n-----BEGIN PGP SIGNATURE-----\nfake\n-----END PGP SIGNATURE-----\n"
    )
    signed_oid = git(path, "hash-object", "-t", "tag", "-w", "--stdin", input=signed.encode())
    git(path, "update-ref", "refs/tags/signed", signed_oid.decode().strip())
    got = {tag.name: tag for tag in await all_tags(client, repo)}
    dup = got[b"v1.0.0-dup"]
    assert dup.id == got[b"v1.0.0"].id and dup.message == got[b"v1.0.0"].message
    assert got[b"signed"].signature_type == shared_pb2.PGP
    assert got[b"signed"].message.startswith(b"signed tag message\n-----BEGIN PGP")
    assert got[b"signed"].tagger.date.seconds == 100000000
    assert got[b"signed"].target_commit == cli_commit(path, oids["root"])


# -- FindTag -------------------------------------------------------------------------------


async def find_tag(client: Client, repo: shared_pb2.Repository, name: bytes) -> shared_pb2.Tag:
    response = await client.unary(
        SERVICE + "FindTag",
        ref_pb2.FindTagRequest(repository=repo, tag_name=name),
        ref_pb2.FindTagResponse,
    )
    return response.tag


@pytest.mark.parametrize("object_format", OBJECT_FORMATS)
async def test_find_tag_matches_git(client: Client, config: Config, object_format: str) -> None:
    path, repo, _ = rich(config, object_format)
    run(path, "update-ref", b"refs/tags/caf\xe9", "v1.0.0")
    for refname in tag_names(path):
        assert await find_tag(client, repo, refname.removeprefix(b"refs/tags/")) == cli_tag(
            path, refname
        )


async def test_find_tag_name_is_a_pattern(client: Client, config: Config) -> None:
    # `git tag -l` takes a glob; the first match by name wins, as in Gitaly.
    path, repo, _ = rich(config)
    first = git(path, "tag", "-l", "v*").split(b"\n")[0]
    assert await find_tag(client, repo, b"v*") == cli_tag(path, b"refs/tags/" + first)


async def test_find_tag_errors(client: Client, config: Config) -> None:
    _, repo, _ = rich(config)
    error = await client.error(
        SERVICE + "FindTag", ref_pb2.FindTagRequest(repository=repo), ref_pb2.FindTagResponse
    )
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "tag name is empty")

    for name in (b"does-not-exist", b"main", b"refs/tags/v1.0.0"):
        error = await client.error(
            SERVICE + "FindTag",
            ref_pb2.FindTagRequest(repository=repo, tag_name=name),
            ref_pb2.FindTagResponse,
        )
        assert_status(error, grpc.StatusCode.NOT_FOUND, "tag does not exist")
        detail = error_detail(error, ref_pb2.FindTagError)
        assert detail.tag_not_found.reference_name == b"refs/tags/" + name

    error = await client.error(
        SERVICE + "FindTag",
        ref_pb2.FindTagRequest(repository=repo, tag_name=b"--contains"),
        ref_pb2.FindTagResponse,
    )
    assert_status(
        error,
        grpc.StatusCode.INTERNAL,
        "for-each-ref error: positional arg \"--contains\" cannot start with dash '-': "
        "invalid argument",
    )


# -- GetTagMessages ------------------------------------------------------------------------


async def tag_messages(
    client: Client, repo: shared_pb2.Repository, ids: list[str]
) -> list[tuple[str, bytes, int]]:
    """(tag id, message, number of message pieces) per tag, from the raw stream."""
    responses = await client.stream(
        SERVICE + "GetTagMessages",
        ref_pb2.GetTagMessagesRequest(repository=repo, tag_ids=ids),
        ref_pb2.GetTagMessagesResponse,
    )
    result: list[tuple[str, bytes, int]] = []
    for response in responses:
        if response.tag_id:
            assert not response.message
            result.append((response.tag_id, b"", 0))
        else:
            tag_id, message, pieces = result[-1]
            result[-1] = (tag_id, message + response.message, pieces + 1)
    return result


@pytest.mark.parametrize("object_format", OBJECT_FORMATS)
async def test_tag_messages_are_whole(client: Client, config: Config, object_format: str) -> None:
    path, repo, oids = rich(config, object_format)
    big = "a" * (300 * 1024)
    git(path, "tag", "-a", "-F", "-", "big", oids["root"], input=big.encode())
    names = ["v1.0.0", "v1.0.0-nested", "blob-tag", "huge-message", "big"]
    ids = [git(path, "rev-parse", name).decode().strip() for name in names]
    got = await tag_messages(client, repo, [*ids, ids[0]])
    expected = [
        (oid, git(path, "cat-file", "tag", oid).partition(b"\n\n")[2]) for oid in [*ids, ids[0]]
    ]
    assert [(tag_id, message) for tag_id, message, _ in got] == expected
    assert got[4][1] == big.encode() + b"\n"
    assert got[4][2] == 3  # 128 KiB pieces
    assert got[0][2] == 1


async def test_tag_messages_by_name_and_empty_message(client: Client, config: Config) -> None:
    path, repo, oids = rich(config)
    raw = f"object {oids['root']}\ntype commit\ntag bare\ntagger A <a@b> 1 +0000\n\n"
    oid = git(path, "hash-object", "-t", "tag", "-w", "--stdin", input=raw.encode())
    got = await tag_messages(client, repo, [oid.decode().strip(), "v2.0.0"])
    assert got == [(oid.decode().strip(), b"", 0), ("v2.0.0", b"Release 2.0.0\n", 1)]


async def test_tag_messages_errors(client: Client, config: Config) -> None:
    path, repo, oids = rich(config)
    tag = git(path, "rev-parse", "v1.0.0").decode().strip()
    for ids, message in (
        ([tag, oids["root"]], "getting tag: expected tag, got commit"),
        (["0" * 40], "getting tag: object not found"),
        (["v9"], "getting tag: object not found"),
    ):
        error = await client.stream_error(
            SERVICE + "GetTagMessages",
            ref_pb2.GetTagMessagesRequest(repository=repo, tag_ids=ids),
            ref_pb2.GetTagMessagesResponse,
        )
        assert_status(error, grpc.StatusCode.INTERNAL, message)

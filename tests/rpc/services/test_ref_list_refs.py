"""ListRefs, FindRefsByOID, RefExists, List{Branch,Tag}NamesContainingCommit, compared
with `git for-each-ref`, `git show-ref`, `git branch --contains` and `git tag --contains`."""

from __future__ import annotations

import itertools

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from tests.helpers import Client, running_client
from tests.repos import FastImport, build_history, git, histories
from tests.rpc.services.test_ref_common import (
    OBJECT_FORMATS,
    SERVICE,
    assert_status,
    empty,
    new_repository,
    pack_refs,
    refs,
    rich,
    run,
)
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import ref_pb2, shared_pb2

Reference = ref_pb2.ListRefsResponse.Reference
ListSort = ref_pb2.ListRefsRequest.SortBy
LIST_SORTS = [
    (ListSort.REFNAME, shared_pb2.ASCENDING, "refname"),
    (ListSort.REFNAME, shared_pb2.DESCENDING, "-refname"),
    (ListSort.CREATORDATE, shared_pb2.ASCENDING, "creatordate"),
    (ListSort.AUTHORDATE, shared_pb2.DESCENDING, "-authordate"),
    (ListSort.COMMITTERDATE, shared_pb2.ASCENDING, "committerdate"),
]


async def list_refs(
    client: Client, repo: shared_pb2.Repository, **fields: object
) -> list[Reference]:
    responses = await client.stream(
        SERVICE + "ListRefs",
        ref_pb2.ListRefsRequest(repository=repo, **fields),  # type: ignore[arg-type]
        ref_pb2.ListRefsResponse,
    )
    return [reference for response in responses for reference in response.references]


def expected_refs(path: str, *args: str, peel: bool = False) -> list[Reference]:
    fmt = "--format=%(refname)%00%(objectname)" + ("%00%(*objectname)" if peel else "")
    return [
        Reference(
            name=fields[0],
            target=fields[1].decode(),
            peeled_target=fields[2].decode() if peel else "",
        )
        for fields in refs(path, fmt, *args)
    ]


# -- ListRefs ------------------------------------------------------------------------------


PATTERNS = [
    ["refs/"],
    ["refs/heads/*", "refs/tags/*"],
    ["refs/tags"],
    ["no", "refs/heads/main"],
    [""],
]


@pytest.mark.parametrize("object_format", OBJECT_FORMATS)
async def test_list_refs_matches_for_each_ref(
    client: Client, config: Config, object_format: str
) -> None:
    path, repo, _ = rich(config, object_format)
    for patterns in PATTERNS:
        encoded = [pattern.encode() for pattern in patterns]
        got = await list_refs(client, repo, patterns=encoded)
        assert got == expected_refs(path, "--sort=refname", *patterns)
        peeled = await list_refs(client, repo, patterns=encoded, peel_tags=True)
        assert peeled == expected_refs(path, "--sort=refname", *patterns, peel=True)
    for key, direction, sort in LIST_SORTS:
        got = await list_refs(
            client, repo, patterns=[b"refs/"], sort_by=ListSort(key=key, direction=direction)
        )
        assert got == expected_refs(path, f"--sort={sort}", "refs/")


async def test_list_refs_head(client: Client, config: Config) -> None:
    path, repo, oids = rich(config)
    got = await list_refs(client, repo, patterns=[b"refs/heads/", b"refs/tags/"], head=True)
    assert got == [
        Reference(name=b"HEAD", target=oids["submodule"]),
        *expected_refs(path, "--sort=refname", "refs/heads/", "refs/tags/"),
    ]
    # HEAD rides along with the first reference: none matching, no HEAD either.
    assert await list_refs(client, repo, patterns=[b"refs/nothing"], head=True) == []
    # An unborn HEAD is left out.
    git(path, "symbolic-ref", "HEAD", "refs/heads/unborn")
    got = await list_refs(client, repo, patterns=[b"refs/heads/main"], head=True)
    assert got == expected_refs(path, "refs/heads/main")


async def test_list_refs_pointing_at(client: Client, config: Config) -> None:
    path, repo, oids = rich(config)
    tag = git(path, "rev-parse", "v1.0.0").decode().strip()
    for oids_ in ([oids["root"]], [oids["second"], oids["renamed"]], [tag], [oids["second"][:10]]):
        got = await list_refs(
            client, repo, patterns=[b"refs/"], pointing_at_oids=[oid.encode() for oid in oids_]
        )
        args = [f"--points-at={oid}" for oid in oids_]
        assert got == expected_refs(path, "--sort=refname", *args, "refs/")
        assert got
    error = await client.stream_error(
        SERVICE + "ListRefs",
        ref_pb2.ListRefsRequest(repository=repo, patterns=[b"refs/"], pointing_at_oids=[b"zz"]),
        ref_pb2.ListRefsResponse,
    )
    assert_status(error, grpc.StatusCode.INTERNAL, "listing failed with exit code 129")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "patterns must have at least one entry"),
        (
            {"patterns": [b"refs/"], "sort_by": ListSort(key=100)},
            'sorting key "100" is not supported',
        ),
        ({"patterns": [b""], "sort_by": ListSort(key=-1)}, 'sorting key "-1" is not supported'),
        (
            {"patterns": [b"refs/"], "sort_by": ListSort(direction=-2)},
            "sorting direction is not supported",
        ),
    ],
)
async def test_list_refs_validation(
    client: Client, config: Config, fields: dict, message: str
) -> None:  # type: ignore[type-arg]
    _, repo = empty(config)
    error = await client.stream_error(
        SERVICE + "ListRefs",
        ref_pb2.ListRefsRequest(repository=repo, **fields),
        ref_pb2.ListRefsResponse,
    )
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, message)


async def test_list_refs_dash_pattern(client: Client, config: Config) -> None:
    _, repo = empty(config)
    error = await client.stream_error(
        SERVICE + "ListRefs",
        ref_pb2.ListRefsRequest(repository=repo, patterns=[b"--all"]),
        ref_pb2.ListRefsResponse,
    )
    assert_status(
        error,
        grpc.StatusCode.INTERNAL,
        "spawning for-each-ref: positional arg \"--all\" cannot start with dash '-': "
        "invalid argument",
    )


async def test_list_refs_many(client: Client, config: Config) -> None:
    path, repo = empty(config)
    build = FastImport()
    commit = build.commit("refs/heads/main", b"c\n", {b"c": b"c"}, parents=[])
    build.run(path)
    oid = git(path, "rev-parse", "main").decode().strip()
    pack_refs(path, [f"refs/keep-around/{'k' * 200}{i:05d}" for i in range(6000)], oid)
    responses = await client.stream(
        SERVICE + "ListRefs",
        ref_pb2.ListRefsRequest(repository=repo, patterns=[b"refs/"]),
        ref_pb2.ListRefsResponse,
    )
    assert len(responses) > 1  # split into messages under 1 MiB
    # Gitaly's budget counts the items, not their few bytes of framing each.
    assert all(response.ByteSize() < 1024 * 1024 + 6000 * 4 for response in responses)
    got = [reference for response in responses for reference in response.references]
    assert got == expected_refs(path, "refs/")
    assert commit


# -- FindRefsByOID -------------------------------------------------------------------------


async def refs_by_oid(client: Client, repo: shared_pb2.Repository, **fields: object) -> list[str]:
    response = await client.unary(
        SERVICE + "FindRefsByOID",
        ref_pb2.FindRefsByOIDRequest(repository=repo, **fields),  # type: ignore[arg-type]
        ref_pb2.FindRefsByOIDResponse,
    )
    return list(response.refs)


def points_at(path: str, oid: str, *args: str) -> list[str]:
    return [
        name.decode() for (name,) in refs(path, "--format=%(refname)", f"--points-at={oid}", *args)
    ]


@pytest.mark.parametrize("object_format", OBJECT_FORMATS)
async def test_refs_by_oid(client: Client, config: Config, object_format: str) -> None:
    path, repo, oids = rich(config, object_format)
    for index in range(3):
        git(path, "update-ref", f"refs/heads/branch-{index}", oids["second"])
    git(path, "update-ref", "refs/keep-around/k", oids["second"])
    oid = oids["second"]
    assert await refs_by_oid(client, repo, oid=oid) == points_at(
        path, oid, "refs/tags/", "refs/heads/"
    )
    assert "refs/tags/v1.0.0" in await refs_by_oid(client, repo, oid=oid)  # peeled one level
    assert await refs_by_oid(client, repo, oid=oid, limit=2) == points_at(
        path, oid, "--count=2", "refs/tags/", "refs/heads/"
    )
    assert await refs_by_oid(client, repo, oid=oid[:8], limit=1) == ["refs/heads/branch-0"]
    assert await refs_by_oid(
        client, repo, oid=oid, sort_field="-refname", limit=3, ref_patterns=["refs/heads/"]
    ) == (points_at(path, oid, "--sort=-refname", "--count=3", "refs/heads/"))
    assert await refs_by_oid(client, repo, oid=oid, ref_patterns=["refs/keep-around/"]) == [
        "refs/keep-around/k"
    ]
    assert await refs_by_oid(client, repo, oid=oids["merge"]) == []


async def test_refs_by_oid_errors(client: Client, config: Config) -> None:
    path, repo, oids = rich(config)
    error = await client.error(
        SERVICE + "FindRefsByOID",
        ref_pb2.FindRefsByOIDRequest(repository=repo),
        ref_pb2.FindRefsByOIDResponse,
    )
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "empty Oid")
    for fields, code, message in (
        (
            {"oid": oids["root"][:2]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "for-each-ref pipeline command: exit status 129",
        ),
        (
            {"oid": oids["root"], "sort_field": "bogus"},
            grpc.StatusCode.INTERNAL,
            "for-each-ref pipeline command: exit status 128",
        ),
    ):
        error = await client.error(
            SERVICE + "FindRefsByOID",
            ref_pb2.FindRefsByOIDRequest(repository=repo, **fields),  # type: ignore[arg-type]
            ref_pb2.FindRefsByOIDResponse,
        )
        assert_status(error, code, message)
    # `refs` is a string field: a name that is not UTF-8 cannot be sent.
    run(path, "update-ref", b"refs/heads/caf\xe9", oids["merge"])
    error = await client.error(
        SERVICE + "FindRefsByOID",
        ref_pb2.FindRefsByOIDRequest(repository=repo, oid=oids["merge"]),
        ref_pb2.FindRefsByOIDResponse,
    )
    assert_status(
        error,
        grpc.StatusCode.INTERNAL,
        "grpc: error while marshaling: string field contains invalid UTF-8",
    )


# -- RefExists -----------------------------------------------------------------------------


@pytest.mark.parametrize("object_format", OBJECT_FORMATS)
async def test_ref_exists(client: Client, config: Config, object_format: str) -> None:
    path, repo, _ = rich(config, object_format)
    git(path, "update-ref", "refs/heads/'test'", "main")
    names = [name for (name,) in refs(path, "--format=%(refname)")]
    candidates = [
        *names,
        b"refs/heads/missing",
        "refs/tags/अस्तित्वहीन".encode(),
        b"refs/ /heads",
        b"refs/; rm -rf /tmp/*",
        b"refs/heads/*",
        b"refs/heads",
        b"refs/heads/remotes/origin",
    ]
    for name in candidates:
        response = await client.unary(
            SERVICE + "RefExists",
            ref_pb2.RefExistsRequest(repository=repo, ref=name),
            ref_pb2.RefExistsResponse,
        )
        assert response.value == (name in names), name
    for name in (b"", b"--", b"in valid", b"HEAD", b"heads/main"):
        error = await client.error(
            SERVICE + "RefExists",
            ref_pb2.RefExistsRequest(repository=repo, ref=name),
            ref_pb2.RefExistsResponse,
        )
        assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "invalid refname")


# -- names containing a commit -------------------------------------------------------------


async def containing(
    client: Client, kind: str, repo: shared_pb2.Repository, **fields: object
) -> list[bytes]:
    rpc = f"List{kind}NamesContainingCommit"
    request_type = getattr(ref_pb2, rpc + "Request")
    response_type = getattr(ref_pb2, rpc + "Response")
    responses = await client.stream(
        SERVICE + rpc, request_type(repository=repo, **fields), response_type
    )
    field = "branch_names" if kind == "Branch" else "tag_names"
    return [name for response in responses for name in getattr(response, field)]


def cli_containing(path: str, kind: str, oid: str, *args: str) -> list[bytes]:
    prefix = "refs/heads" if kind == "Branch" else "refs/tags"
    return [
        name.removeprefix(prefix.encode() + b"/")
        for (name,) in refs(path, "--format=%(refname)", f"--contains={oid}", *args, prefix)
    ]


@pytest.mark.parametrize("object_format", OBJECT_FORMATS)
async def test_names_containing_commit(client: Client, config: Config, object_format: str) -> None:
    path, repo, oids = rich(config, object_format)
    for kind in ("Branch", "Tag"):
        for name, oid in oids.items():
            got = await containing(client, kind, repo, commit_id=oid)
            assert got == cli_containing(path, kind, oid), name
            assert await containing(client, kind, repo, commit_id=oid, limit=1) == got[:1]
        # Cross-check with the porcelain commands.
        porcelain = "branch" if kind == "Branch" else "tag"
        out = run(path, porcelain, "--format=%(refname:lstrip=2)", "--contains", oids["root"])
        assert await containing(client, kind, repo, commit_id=oids["root"]) == out.splitlines()


@pytest.mark.parametrize("object_format", OBJECT_FORMATS)
async def test_names_containing_commit_errors(
    client: Client, config: Config, object_format: str
) -> None:
    path, repo, oids = rich(config, object_format)
    length = 40 if object_format == "sha1" else 64
    other = 64 if object_format == "sha1" else 40
    cases = [
        (
            "invalid",
            grpc.StatusCode.INVALID_ARGUMENT,
            f'invalid object ID: "invalid", expected length {length}, got 7',
        ),
        (
            "",
            grpc.StatusCode.INVALID_ARGUMENT,
            f'invalid object ID: "", expected length {length}, got 0',
        ),
        (
            "a" * other,
            grpc.StatusCode.INVALID_ARGUMENT,
            f'invalid object ID: "{"a" * other}", expected length {length}, got {other}',
        ),
        (
            "A" * length,
            grpc.StatusCode.INVALID_ARGUMENT,
            f"invalid object ID: \"{'A' * length}\", invalid character 'A'",
        ),
        ("1" * length, grpc.StatusCode.INTERNAL, "exit status 129"),
    ]
    blob = git(path, "rev-parse", f"{oids['root']}:README.md").decode().strip()
    cases.append((blob, grpc.StatusCode.INTERNAL, "exit status 129"))
    for (commit_id, code, message), kind in itertools.product(cases, ("Branch", "Tag")):
        rpc = f"List{kind}NamesContainingCommit"
        error = await client.stream_error(
            SERVICE + rpc,
            getattr(ref_pb2, rpc + "Request")(repository=repo, commit_id=commit_id),
            getattr(ref_pb2, rpc + "Response"),
        )
        assert_status(error, code, message)


# -- random histories ----------------------------------------------------------------------


@given(history=histories())
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_listings_of_random_histories(config: Config, history: list) -> None:  # type: ignore[type-arg]
    path, repo = new_repository(config)
    commits = build_history(path, history)
    git(path, "tag", "-a", "-m", "t\n", "annotated", commits[0])
    git(path, "tag", "light", commits[len(commits) // 2])
    async with running_client(config) as client:
        await _check_listings(client, path, repo, list(commits.values()))


async def _check_listings(
    client: Client, path: str, repo: shared_pb2.Repository, commits: list[str]
) -> None:
    assert await list_refs(client, repo, patterns=[b"refs/"], peel_tags=True) == expected_refs(
        path, "refs/", peel=True
    )
    # A few commits per example: the tips, the root and one in between.
    for oid in sorted(set(commits[:1] + commits[-2:] + commits[len(commits) // 2 :][:1])):
        for kind in ("Branch", "Tag"):
            assert await containing(client, kind, repo, commit_id=oid) == cli_containing(
                path, kind, oid
            )
        assert await refs_by_oid(client, repo, oid=oid) == points_at(
            path, oid, "refs/tags/", "refs/heads/"
        )

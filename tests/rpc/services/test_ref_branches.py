"""FindLocalBranches, FindAllBranches, FindBranch, FindDefaultBranchName, compared with
`git for-each-ref` / `git symbolic-ref` on the same repositories."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from tests.helpers import Client, running_client
from tests.repos import FastImport, build_history, git, histories
from tests.rpc.services.test_ref_common import (
    OBJECT_FORMATS,
    SERVICE,
    assert_status,
    cli_commit,
    empty,
    new_repository,
    pack_refs,
    refs,
    rich,
    run,
)
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import ref_pb2, shared_pb2

LOCAL_SORTS = [
    (ref_pb2.FindLocalBranchesRequest.NAME, "refname"),
    (ref_pb2.FindLocalBranchesRequest.UPDATED_ASC, "committerdate"),
    (ref_pb2.FindLocalBranchesRequest.UPDATED_DESC, "-committerdate"),
]


async def local_branches(
    client: Client, repo: shared_pb2.Repository, **fields: object
) -> list[shared_pb2.Branch]:
    responses = await client.stream(
        SERVICE + "FindLocalBranches",
        ref_pb2.FindLocalBranchesRequest(repository=repo, **fields),  # type: ignore[arg-type]
        ref_pb2.FindLocalBranchesResponse,
    )
    return [branch for response in responses for branch in response.local_branches]


async def all_branches(
    client: Client, repo: shared_pb2.Repository, **fields: object
) -> list[ref_pb2.FindAllBranchesResponse.Branch]:
    responses = await client.stream(
        SERVICE + "FindAllBranches",
        ref_pb2.FindAllBranchesRequest(repository=repo, **fields),  # type: ignore[arg-type]
        ref_pb2.FindAllBranchesResponse,
    )
    return [branch for response in responses for branch in response.branches]


def expected_branches(
    path: str, *args: str, memo: dict[bytes, shared_pb2.GitCommit] | None = None
) -> list[shared_pb2.Branch]:
    memo = {} if memo is None else memo
    result = []
    for name, oid in refs(path, "--format=%(refname)%00%(objectname)", *args):
        if oid not in memo:
            memo[oid] = cli_commit(path, oid.decode())
        result.append(shared_pb2.Branch(name=name, target_commit=memo[oid]))
    return result


# -- FindLocalBranches ---------------------------------------------------------------------


@pytest.mark.parametrize("object_format", OBJECT_FORMATS)
@pytest.mark.parametrize(("sort_by", "key"), LOCAL_SORTS, ids=["name", "asc", "desc"])
async def test_local_branches_match_for_each_ref(
    client: Client, config: Config, object_format: str, sort_by: int, key: str
) -> None:
    path, repo, _ = rich(config, object_format)
    got = await local_branches(client, repo, sort_by=sort_by)
    assert got == expected_branches(path, f"--sort={key}", "refs/heads")
    # Non-UTF-8 names come back as their bytes; a branch on a tag object shows the commit.
    names = [branch.name for branch in got]
    assert b"refs/heads/caf\xe9-latin1" in names
    tagged = got[names.index(b"refs/heads/tagged")]
    assert tagged.target_commit.id == git(path, "rev-parse", "v1.0.0^{commit}").decode().strip()


async def test_local_branches_of_empty_repository(client: Client, config: Config) -> None:
    _, repo = empty(config)
    assert await local_branches(client, repo) == []


async def test_local_branches_ignore_other_refs(client: Client, config: Config) -> None:
    path, repo = empty(config)
    build = FastImport()
    commit = build.commit("refs/keep-around/kept", b"kept\n", {b"a": b"a"}, parents=[])
    build.ref("refs/remotes/origin/remote-branch", commit)
    build.ref("refs/tags/v1", commit)
    build.run(path)
    assert await local_branches(client, repo) == []


def many_branches(config: Config, count: int, name: str = "many.git") -> tuple[str, str, object]:
    path, repo = empty(config, name)
    build = FastImport()
    build.commit("refs/heads/branch-a", b"a\n", {b"a": b"a"}, parents=[])
    build.run(path)
    oid = git(path, "rev-parse", "branch-a").decode().strip()
    pack_refs(path, [f"refs/heads/branch-{i:04d}" for i in range(count)], oid)
    return path, oid, repo


async def test_local_branches_many_share_one_commit(client: Client, config: Config) -> None:
    path, oid, repo = many_branches(config, 1500)
    got = await local_branches(client, repo)
    assert [branch.name for branch in got] == [
        name for (name,) in refs(path, "--format=%(refname)", "refs/heads")
    ]
    assert {branch.target_commit.SerializeToString() for branch in got} == {
        cli_commit(path, oid).SerializeToString()
    }


PAGES = [
    # (limit, page token, the slice of the names sorted by refname expected)
    (2, "", slice(0, 2)),
    (-1, "", slice(0, None)),
    (0, "", slice(0, 0)),
    (100, "", slice(0, None)),
    (1, "refs/heads/branch-0000", slice(1, 2)),
    (3, "refs/heads/branch-0003", slice(4, 7)),
    (-1, "refs/heads/branch-0003", slice(4, None)),
    (5, "refs/heads/branch-0008", slice(9, None)),
    (5, "refs/heads/branch-a", slice(0, 0)),
]


@pytest.mark.parametrize(("limit", "token", "window"), PAGES)
async def test_local_branches_pagination(
    client: Client, config: Config, limit: int, token: str, window: slice
) -> None:
    path, _, repo = many_branches(config, 10)
    names = [name for (name,) in refs(path, "--format=%(refname)", "refs/heads")]
    assert names[-1] == b"refs/heads/branch-a"
    got = await local_branches(
        client,
        repo,
        pagination_params=shared_pb2.PaginationParameter(limit=limit, page_token=token),
    )
    assert [branch.name for branch in got] == names[window]


@pytest.mark.parametrize(
    ("limit", "token"),
    [(10, "refs/heads/does-not-exist"), (0, "refs/heads/branch-0001"), (5, "branch-0001")],
)
async def test_local_branches_unknown_page_token(
    client: Client, config: Config, limit: int, token: str
) -> None:
    # A limit of 0 never reaches the token, so even an existing one is "not found".
    _, _, repo = many_branches(config, 3)
    error = await client.stream_error(
        SERVICE + "FindLocalBranches",
        ref_pb2.FindLocalBranchesRequest(
            repository=repo,
            pagination_params=shared_pb2.PaginationParameter(limit=limit, page_token=token),
        ),
        ref_pb2.FindLocalBranchesResponse,
    )
    assert_status(
        error,
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid page token: sending lines: could not find page token",
    )


async def test_local_branches_pages_follow_the_sort(client: Client, config: Config) -> None:
    path, repo, _ = rich(config)
    names = [
        name for (name,) in refs(path, "--format=%(refname)", "--sort=-committerdate", "refs/heads")
    ]
    for index, token in enumerate(names):
        if not token.isascii():
            continue  # a page token is a proto string
        got = await local_branches(
            client,
            repo,
            sort_by=ref_pb2.FindLocalBranchesRequest.UPDATED_DESC,
            pagination_params=shared_pb2.PaginationParameter(limit=2, page_token=token.decode()),
        )
        assert [branch.name for branch in got] == names[index + 1 : index + 3]


async def test_local_branches_unknown_sort_key(client: Client, config: Config) -> None:
    _, repo, _ = rich(config)
    error = await client.stream_error(
        SERVICE + "FindLocalBranches",
        ref_pb2.FindLocalBranchesRequest(repository=repo, sort_by=17),  # type: ignore[arg-type]
        ref_pb2.FindLocalBranchesResponse,
    )
    assert_status(error, grpc.StatusCode.INTERNAL, "panic: never reached")


async def test_huge_committer_name_is_sent_whole(client: Client, config: Config) -> None:
    path, repo = empty(config)
    build = FastImport()
    from tests.repos import Person

    build.commit(
        "refs/heads/big", b"m\n", {b"a": b"a"}, parents=[], committer=Person(b"A" * 100_000)
    )
    build.run(path)
    assert await local_branches(client, repo) == expected_branches(path, "refs/heads")


# -- FindAllBranches -----------------------------------------------------------------------


@pytest.mark.parametrize("object_format", OBJECT_FORMATS)
async def test_all_branches_include_remote_tracking(
    client: Client, config: Config, object_format: str
) -> None:
    path, repo, _ = rich(config, object_format)
    got = await all_branches(client, repo)
    expected = expected_branches(path, "refs/heads", "refs/remotes")
    assert [(b.name, b.target) for b in got] == [(b.name, b.target_commit) for b in expected]
    assert b"refs/remotes/origin/feature" in [branch.name for branch in got]


async def test_all_branches_merged_only(client: Client, config: Config) -> None:
    path, repo, oids = rich(config)
    build = FastImport()
    build.commit("refs/heads/unmerged", b"not merged\n", {b"u": b"u"}, parents=[oids["feature"]])
    build.run(path)
    got = await all_branches(client, repo, merged_only=True)
    expected = expected_branches(path, "--merged=refs/heads/main", "refs/heads", "refs/remotes")
    assert [(b.name, b.target) for b in got] == [(b.name, b.target_commit) for b in expected]
    names = [branch.name for branch in got]
    assert b"refs/heads/feature" in names and b"refs/heads/unmerged" not in names

    got = await all_branches(
        client,
        repo,
        merged_only=True,
        merged_branches=[
            b"refs/heads/does-not-exist",
            b"refs/heads/feature",
            b"refs/heads/unmerged",
        ],
    )
    assert [branch.name for branch in got] == [b"refs/heads/feature"]
    # Without merged_only the list is ignored.
    got = await all_branches(client, repo, merged_branches=[b"refs/heads/feature"])
    assert len(got) == len(expected_branches(path, "refs/heads", "refs/remotes"))


async def test_all_branches_merged_into_head_target(client: Client, config: Config) -> None:
    # The default branch follows HEAD when HEAD's branch exists.
    path, repo, _ = rich(config)
    git(path, "symbolic-ref", "HEAD", "refs/heads/feature")
    got = await all_branches(client, repo, merged_only=True)
    assert [b.name for b in got] == [
        name
        for (name,) in refs(
            path, "--format=%(refname)", "--merged=refs/heads/feature", "refs/heads", "refs/remotes"
        )
    ]


async def test_all_branches_empty_repository(client: Client, config: Config) -> None:
    _, repo = empty(config)
    assert await all_branches(client, repo) == []
    # No default branch: Gitaly runs `for-each-ref --merged=`, which git refuses.
    error = await client.stream_error(
        SERVICE + "FindAllBranches",
        ref_pb2.FindAllBranchesRequest(repository=repo, merged_only=True),
        ref_pb2.FindAllBranchesResponse,
    )
    assert_status(
        error, grpc.StatusCode.INTERNAL, "finding refs: listing failed with exit code 128"
    )


# -- FindBranch ----------------------------------------------------------------------------


async def find_branch(client: Client, repo: shared_pb2.Repository, name: bytes) -> object:
    response = await client.unary(
        SERVICE + "FindBranch",
        ref_pb2.FindBranchRequest(repository=repo, name=name),
        ref_pb2.FindBranchResponse,
    )
    return response.branch if response.HasField("branch") else None


@pytest.mark.parametrize("object_format", OBJECT_FORMATS)
async def test_find_branch(client: Client, config: Config, object_format: str) -> None:
    path, repo, oids = rich(config, object_format)
    for name in (b"main", b"feature", "ünicode-branch".encode(), b"caf\xe9-latin1", b"tagged"):
        expected = shared_pb2.Branch(
            name=name,
            target_commit=cli_commit(
                path, run(path, "rev-parse", b"refs/heads/" + name).decode().strip()
            ),
        )
        assert await find_branch(client, repo, name) == expected
    assert await find_branch(client, repo, b"does-not-exist") is None
    # A full name is taken as a short one: refs/heads/refs/heads/main.
    assert await find_branch(client, repo, b"refs/heads/main") is None
    git(path, "update-ref", "refs/heads/refs/heads/main", oids["root"])
    got = await find_branch(client, repo, b"refs/heads/main")
    assert got == shared_pb2.Branch(
        name=b"refs/heads/main", target_commit=cli_commit(path, oids["root"])
    )


async def test_find_branch_errors(client: Client, config: Config) -> None:
    _, repo, _ = rich(config)
    error = await client.error(
        SERVICE + "FindBranch",
        ref_pb2.FindBranchRequest(repository=repo),
        ref_pb2.FindBranchResponse,
    )
    assert_status(error, grpc.StatusCode.INVALID_ARGUMENT, "Branch name cannot be empty")
    # The name is a for-each-ref pattern: a glob matching another branch is ambiguous.
    error = await client.error(
        SERVICE + "FindBranch",
        ref_pb2.FindBranchRequest(repository=repo, name=b"f*"),
        ref_pb2.FindBranchResponse,
    )
    assert_status(
        error,
        grpc.StatusCode.INVALID_ARGUMENT,
        "target reference is ambiguous: reference is ambiguous: "
        'conflicts with "refs/heads/feature"',
    )
    error = await client.error(
        SERVICE + "FindBranch",
        ref_pb2.FindBranchRequest(repository=repo, name=b"c*"),
        ref_pb2.FindBranchResponse,
    )
    assert_status(
        error,
        grpc.StatusCode.INVALID_ARGUMENT,
        "target reference is ambiguous: reference is ambiguous: "
        'conflicts with "refs/heads/caf\\xe9-latin1"',
    )


# -- FindDefaultBranchName -----------------------------------------------------------------


async def default_branch(
    client: Client, repo: shared_pb2.Repository, head_only: bool = False
) -> bytes:
    response = await client.unary(
        SERVICE + "FindDefaultBranchName",
        ref_pb2.FindDefaultBranchNameRequest(repository=repo, head_only=head_only),
        ref_pb2.FindDefaultBranchNameResponse,
    )
    return bytes(response.name)


async def test_default_branch_fallback_order(client: Client, config: Config) -> None:
    path, repo = empty(config)
    git(path, "symbolic-ref", "HEAD", "refs/heads/trunk")
    assert await default_branch(client, repo) == b""
    assert await default_branch(client, repo, head_only=True) == b"refs/heads/trunk"

    build = FastImport()
    mark = build.commit("refs/heads/zebra", b"z\n", {b"z": b"z"}, parents=[])
    build.ref("refs/heads/banana", mark)
    build.ref("refs/tags/trunk", mark)
    first = build.run(path)[mark]
    # Neither HEAD's branch nor main nor master: the first branch by name.
    assert await default_branch(client, repo) == b"refs/heads/banana"
    git(path, "update-ref", "refs/heads/master", first)
    assert await default_branch(client, repo) == b"refs/heads/master"
    git(path, "update-ref", "refs/heads/main", first)
    assert await default_branch(client, repo) == b"refs/heads/main"
    git(path, "update-ref", "refs/heads/trunk", first)
    assert await default_branch(client, repo) == b"refs/heads/trunk"
    assert await default_branch(client, repo, head_only=True) == b"refs/heads/trunk"


async def test_default_branch_single_branch(client: Client, config: Config) -> None:
    path, repo = empty(config)
    git(path, "symbolic-ref", "HEAD", "refs/heads/main")
    build = FastImport()
    build.commit("refs/heads/banana", b"b\n", {b"b": b"b"}, parents=[])
    build.run(path)
    assert await default_branch(client, repo) == b"refs/heads/banana"
    assert await default_branch(client, repo, head_only=True) == b"refs/heads/main"


async def test_default_branch_detached_head(client: Client, config: Config) -> None:
    path, repo, oids = rich(config)
    git(path, "update-ref", "--no-deref", "HEAD", oids["root"])
    for head_only, message in ((False, "get default branch"), (True, "head reference")):
        error = await client.error(
            SERVICE + "FindDefaultBranchName",
            ref_pb2.FindDefaultBranchNameRequest(repository=repo, head_only=head_only),
            ref_pb2.FindDefaultBranchNameResponse,
        )
        assert_status(error, grpc.StatusCode.INTERNAL, f"{message}: exit status 128")


# -- random histories ----------------------------------------------------------------------


@given(history=histories())
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_branches_of_random_histories(config: Config, history: list) -> None:  # type: ignore[type-arg]
    path, repo = new_repository(config)
    build_history(path, history)
    async with running_client(config) as client:
        await _check_branches(client, path, repo)


async def _check_branches(client: Client, path: str, repo: shared_pb2.Repository) -> None:
    memo: dict[bytes, shared_pb2.GitCommit] = {}
    for sort_by, key in LOCAL_SORTS:
        got = await local_branches(client, repo, sort_by=sort_by)
        assert got == expected_branches(path, f"--sort={key}", "refs/heads", memo=memo)
    merged = await all_branches(client, repo, merged_only=True)
    head = git(path, "symbolic-ref", "HEAD").decode().strip()
    assert [b.name for b in merged] == [
        name
        for (name,) in refs(
            path, "--format=%(refname)", f"--merged={head}", "refs/heads", "refs/remotes"
        )
    ]
    assert await default_branch(client, repo) == head.encode()

"""RepositoryService HasLocalBranches, FindMergeBase and CalculateChecksum against git.

A real server and grpcio client; every answer is compared with the git CLI on the same
repository (for-each-ref, merge-base, show-ref), and every error with Gitaly's code and
message (internal/gitaly/service/repository/*_test.go).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Client
from tests.helpers import new_path as new_path
from tests.helpers import repository as repo
from tests.helpers import running_client as running_client
from tests.repos import FastImport, build_history, git, histories, rich_repository
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import repository_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

SERVICE = "/gitaly.RepositoryService/"
FORMATS = ["sha1", "sha256"]
ZERO = "0" * 40
History = list[tuple[str, bytes, dict[bytes, bytes | None], int | None]]


def init(path: str, object_format: str = "sha1") -> None:
    subprocess.run(
        ["git", "init", "--bare", "--quiet", f"--object-format={object_format}", path],
        check=True,
    )


INVALID_REPOSITORIES = [
    (None, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
    (repo("x.git", storage="fake"), grpc.StatusCode.INVALID_ARGUMENT, "storage name not found"),
    (repo("missing.git"), grpc.StatusCode.NOT_FOUND, "repository not found"),
]


# -- HasLocalBranches ------------------------------------------------------------------


async def has_local_branches(client: Client, name: str) -> bool:
    request = pb.HasLocalBranchesRequest(repository=repo(name))
    response = await client.unary(
        SERVICE + "HasLocalBranches", request, pb.HasLocalBranchesResponse
    )
    return bool(response.value)


@pytest.mark.parametrize("object_format", FORMATS)
async def test_has_local_branches_matches_for_each_ref(
    client: Client, config: Config, object_format: str
) -> None:
    rich = new_path(config, "rich.git")
    rich_repository(rich, object_format)
    empty = new_path(config, "empty.git")
    init(empty, object_format)
    # Only tags and other namespaces: no branch, though HEAD and refs exist.
    tags_only = new_path(config, "tags.git")
    build = FastImport(object_format=object_format)
    commit = build.commit("refs/tags/v1", b"tagged\n", {b"a": b"a\n"}, parents=[])
    build.ref("refs/heads-not/x", commit)
    build.ref("refs/remotes/origin/main", commit)
    build.run(tags_only)
    for name, path in [("rich.git", rich), ("empty.git", empty), ("tags.git", tags_only)]:
        expected = bool(git(path, "for-each-ref", "refs/heads/").strip())
        assert await has_local_branches(client, name) is expected
    assert await has_local_branches(client, "rich.git")
    assert not await has_local_branches(client, "tags.git")


async def test_has_local_branches_packed_only(client: Client, config: Config) -> None:
    path = new_path(config, "packed.git")
    rich_repository(path)
    git(path, "pack-refs", "--all")
    assert not os.listdir(os.path.join(path, "refs", "heads"))
    assert await has_local_branches(client, "packed.git")


@pytest.mark.parametrize(("repository", "code", "message"), INVALID_REPOSITORIES)
async def test_has_local_branches_errors(
    client: Client,
    repository: shared_pb2.Repository | None,
    code: grpc.StatusCode,
    message: str,
) -> None:
    request = pb.HasLocalBranchesRequest(repository=repository)
    error = await client.error(SERVICE + "HasLocalBranches", request, pb.HasLocalBranchesResponse)
    assert (error.code(), error.details()) == (code, message)


# -- FindMergeBase ---------------------------------------------------------------------


async def merge_base(client: Client, name: str, *revisions: bytes) -> str:
    request = pb.FindMergeBaseRequest(repository=repo(name), revisions=list(revisions))
    response = await client.unary(SERVICE + "FindMergeBase", request, pb.FindMergeBaseResponse)
    return str(response.base)


def git_merge_base(path: str, *revisions: bytes) -> str:
    result = subprocess.run(
        ["git", "-C", path, "merge-base", "--end-of-options", *revisions],
        capture_output=True,
        env={**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_SYSTEM": "/dev/null"},
    )
    return result.stdout.decode().strip() if result.returncode == 0 else ""


def criss_cross(path: str, object_format: str) -> dict[str, str]:
    """Upstream's history: base, an unrelated root, l1..l3 and r1..r3 crossing twice.

        l1  l2  l3
        o---o---o
       / \\   \\ /
    base o   \\   X
       \\   \\ / \\
        o---o---o
        r1  r2  r3
    """
    build = FastImport(object_format=object_format)
    base = build.commit("refs/heads/base", b"base\n", {b"f": b"base\n"}, parents=[])
    unrelated = build.commit("refs/heads/unrelated", b"unrelated\n", {b"u": b"u\n"}, parents=[])
    l1 = build.commit("refs/heads/l1", b"l1\n", {b"l": b"1\n"}, parents=[base])
    r1 = build.commit("refs/heads/r1", b"r1\n", {b"r": b"1\n"}, parents=[base])
    l2 = build.commit("refs/heads/l2", b"l2\n", {b"l": b"2\n"}, parents=[l1])
    r2 = build.commit("refs/heads/r2", b"r2\n", {b"r": b"2\n"}, parents=[r1, l1])
    l3 = build.commit("refs/heads/l3", b"l3\n", {b"l": b"3\n"}, parents=[l2, r2])
    r3 = build.commit("refs/heads/r3", b"r3\n", {b"r": b"3\n"}, parents=[r2, l2])
    marks = build.run(path)
    names = {"base": base, "unrelated": unrelated, "l1": l1, "r1": r1, "l2": l2, "r2": r2}
    names |= {"l3": l3, "r3": r3}
    return {name: marks[mark] for name, mark in names.items()}


@pytest.mark.parametrize("object_format", FORMATS)
async def test_find_merge_base_upstream_cases(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "cc.git")
    oids = criss_cross(path, object_format)
    cases = [
        ([oids["l1"], oids["r1"]], oids["base"]),  # object ids
        (["l1", "r1"], oids["base"]),  # references
        ([oids["base"], oids["unrelated"]], ""),  # no merge base
        (["l1", "a-branch-that-does-not-exist"], ""),
        # With more than two, the rest form a virtual merge: l1 is its best ancestor.
        ([oids["l1"], oids["l2"], oids["r1"]], oids["l1"]),
        # Criss-cross: ambiguous; git's first answer (by commit date) wins.
        ([oids["l3"], oids["r3"]], git_merge_base(path, oids["l3"].encode(), oids["r3"].encode())),
        (["refs/heads/l3", "r3~0", "HEAD"], ""),  # HEAD is unborn (master)
    ]
    assert cases[5][1] in (oids["l2"], oids["r2"])
    for revisions, expected in cases:
        encoded = [r.encode() for r in revisions]
        assert await merge_base(client, "cc.git", *encoded) == expected
        assert git_merge_base(path, *encoded) == expected


@pytest.mark.parametrize("object_format", FORMATS)
async def test_find_merge_base_rich_repository(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    oids = rich_repository(path, object_format)
    revisions = [b"main", b"feature", "ünicode-branch".encode(), b"v1.0.0", b"v2.0.0^{commit}"]
    revisions += [oids["latin1"].encode(), oids["merge"][:10].encode(), b"blob-tag"]
    for first in revisions:
        for second in revisions:
            expected = git_merge_base(path, first, second)
            assert await merge_base(client, "rich.git", first, second) == expected


async def test_find_merge_base_errors(client: Client, config: Config) -> None:
    path = new_path(config, "cc.git")
    criss_cross(path, "sha1")
    request = pb.FindMergeBaseRequest(repository=repo("cc.git"), revisions=[b"l1"])
    error = await client.error(SERVICE + "FindMergeBase", request, pb.FindMergeBaseResponse)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "at least 2 revisions are required"
    # No revisions at all; and the repository is checked before the revisions.
    for repository, code, message in [
        (repo("cc.git"), grpc.StatusCode.INVALID_ARGUMENT, "at least 2 revisions are required"),
        *INVALID_REPOSITORIES,
    ]:
        request = pb.FindMergeBaseRequest(repository=repository)
        error = await client.error(SERVICE + "FindMergeBase", request, pb.FindMergeBaseResponse)
        assert (error.code(), error.details()) == (code, message)
    # Gitaly's command validation refuses an option-like revision: Internal.
    request = pb.FindMergeBaseRequest(repository=repo("cc.git"), revisions=[b"l1", b"--all"])
    error = await client.error(SERVICE + "FindMergeBase", request, pb.FindMergeBaseResponse)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == (
        "cmd: positional arg \"--all\" cannot start with dash '-': invalid argument"
    )


@given(history=histories(max_commits=6), data=st.data())
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_find_merge_base_random_histories(
    config: Config, history: History, data: st.DataObject
) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = new_path(config, name)
    commits = build_history(path, history)
    candidates = [oid.encode() for oid in commits.values()]
    candidates += [b"main", b"topic", b"release/1.x", b"HEAD~1", b"no-such-branch"]
    async with running_client(config) as client:
        for _ in range(3):
            revisions = data.draw(st.lists(st.sampled_from(candidates), min_size=2, max_size=4))
            assert await merge_base(client, name, *revisions) == git_merge_base(path, *revisions)


# -- CalculateChecksum -----------------------------------------------------------------

# Gitaly's well-known namespaces; matched anywhere in the "<oid> <ref>" line.
CHECKSUMMED = re.compile(r"HEAD|(refs/(heads|tags|keep-around|merge-requests|environments|notes)/)")


def expected_checksum(path: str) -> str:
    """The checksum from `git for-each-ref` and `git rev-parse HEAD`, computed afresh."""
    lines = git(path, "for-each-ref", "--format=%(objectname) %(refname)").decode().splitlines()
    head = subprocess.run(
        ["git", "-C", path, "rev-parse", "--verify", "--quiet", "HEAD"],
        capture_output=True,
        text=True,
    )
    if head.returncode == 0:
        lines.append(f"{head.stdout.strip()} HEAD")
    total = 0
    for line in lines:
        if CHECKSUMMED.search(line):
            total ^= int.from_bytes(hashlib.sha1(line.encode()).digest(), "big")
    if not total:
        return ZERO
    return total.to_bytes((total.bit_length() + 7) // 8, "big").hex()


async def checksum(client: Client, name: str) -> str:
    request = pb.CalculateChecksumRequest(repository=repo(name))
    response = await client.unary(
        SERVICE + "CalculateChecksum", request, pb.CalculateChecksumResponse
    )
    return str(response.checksum)


@pytest.mark.parametrize("object_format", FORMATS)
async def test_calculate_checksum_matches_refs(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    oids = rich_repository(path, object_format)
    # Every namespace Gitaly covers, and some it ignores.
    for ref in [
        "refs/keep-around/" + oids["root"],
        "refs/merge-requests/1/head",
        "refs/environments/production/deployments/1",
        "refs/notes/commits",
        "refs/pipelines/7",  # not covered
        "refs/unknown/namespace",  # not covered
        "refs/remotes/origin/HEAD",  # covered: the line contains "HEAD"
    ]:
        git(path, "update-ref", ref, oids["second"])
    before = await checksum(client, "rich.git")
    assert before == expected_checksum(path)
    # Packing the references changes nothing.
    git(path, "pack-refs", "--all")
    assert await checksum(client, "rich.git") == before
    # Ignored namespaces do not count; covered ones do.
    git(path, "update-ref", "refs/pipelines/8", oids["root"])
    assert await checksum(client, "rich.git") == before
    git(path, "update-ref", "refs/tags/new", oids["root"])
    after = await checksum(client, "rich.git")
    assert after != before and after == expected_checksum(path)


@pytest.mark.parametrize("object_format", FORMATS)
async def test_calculate_checksum_empty_repository(
    client: Client, config: Config, object_format: str
) -> None:
    init(new_path(config, "empty.git"), object_format)
    assert await checksum(client, "empty.git") == ZERO
    # Only references outside the covered namespaces: still zero.
    path = new_path(config, "other.git")
    build = FastImport(object_format=object_format)
    build.commit("refs/pipelines/1", b"c\n", {b"a": b"a\n"}, parents=[])
    build.run(path)
    assert await checksum(client, "other.git") == ZERO


async def test_calculate_checksum_drops_leading_zero_bytes(client: Client, config: Config) -> None:
    """Gitaly prints a big integer: a checksum starting with a zero byte is shorter."""
    path = new_path(config, "short.git")
    build = FastImport()
    build.commit("refs/heads/seed", b"c\n", {b"a": b"a\n"}, parents=[])
    build.run(path)
    oid = git(path, "rev-parse", "refs/heads/seed").decode().strip()
    git(path, "update-ref", "-d", "refs/heads/seed")
    for index in range(5000):
        ref = f"refs/heads/b{index}"
        if hashlib.sha1(f"{oid} {ref}".encode()).digest()[0] == 0:
            break
    git(path, "update-ref", ref, oid)  # HEAD (master) stays unborn: one line only
    digest = hashlib.sha1(f"{oid} {ref}".encode()).digest()
    assert await checksum(client, "short.git") == digest.lstrip(b"\0").hex()
    assert len(await checksum(client, "short.git")) < 40


async def test_calculate_checksum_broken_repositories(client: Client, config: Config) -> None:
    # An empty HEAD file: git no longer sees a repository at all.
    broken = new_path(config, "broken.git")
    init(broken)
    with open(os.path.join(broken, "HEAD"), "w"):
        pass
    request = pb.CalculateChecksumRequest(repository=repo("broken.git"))
    error = await client.error(SERVICE + "CalculateChecksum", request, pb.CalculateChecksumResponse)
    assert error.code() == grpc.StatusCode.DATA_LOSS
    assert error.details() == f"not a git repository '{broken}'"
    # A packed-refs line git refuses: show-ref fails, the repository is valid: zero.
    path = new_path(config, "invalid-ref.git")
    build = FastImport()
    commit = build.commit("refs/heads/master", b"c\n", {b"a": b"a\n"}, parents=[])
    oid = build.run(path)[commit]
    with open(os.path.join(path, "packed-refs"), "w") as packed:
        packed.write(f"# pack-refs with: peeled fully-peeled sorted\n{oid} refs/heads/broken:ref\n")
    assert await checksum(client, "invalid-ref.git") == ZERO


@pytest.mark.parametrize(("repository", "code", "message"), INVALID_REPOSITORIES)
async def test_calculate_checksum_errors(
    client: Client,
    repository: shared_pb2.Repository | None,
    code: grpc.StatusCode,
    message: str,
) -> None:
    request = pb.CalculateChecksumRequest(repository=repository)
    error = await client.error(SERVICE + "CalculateChecksum", request, pb.CalculateChecksumResponse)
    assert (error.code(), error.details()) == (code, message)


@given(history=histories(max_commits=6))
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_calculate_checksum_random_histories(config: Config, history: History) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = new_path(config, name)
    build_history(path, history)
    async with running_client(config) as client:
        assert await checksum(client, name) == expected_checksum(path)

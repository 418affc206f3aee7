"""RepositoryService over a real server and grpcio: answers compared with the git CLI."""

from __future__ import annotations

import os

import grpc
import pytest
import trio

from tests.helpers import Client, git, storage_path
from tests.helpers import repository as repo
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer
from trio_gitaly.rpc.gen.gitaly import repository_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

SERVICE = "/gitaly.RepositoryService/"


async def exists(client: Client, repository: shared_pb2.Repository | None) -> bool:
    request = pb.RepositoryExistsRequest(repository=repository)
    response = await client.unary(
        SERVICE + "RepositoryExists", request, pb.RepositoryExistsResponse
    )
    return bool(response.exists)


async def test_create_repository_matches_git_init(client: Client, config: Config) -> None:
    await client.unary(
        SERVICE + "CreateRepository",
        pb.CreateRepositoryRequest(repository=repo("group/project.git"), default_branch=b"trunk"),
        pb.CreateRepositoryResponse,
    )
    path = os.path.join(storage_path(config), "group/project.git")
    assert git("rev-parse", "--is-bare-repository", cwd=path).strip() == "true"
    assert git("symbolic-ref", "HEAD", cwd=path).strip() == "refs/heads/trunk"
    assert git("rev-parse", "--show-object-format", cwd=path).strip() == "sha1"
    assert await exists(client, repo("group/project.git"))
    # Nothing half-built is left behind in the storage's temporary directory.
    tmp = os.path.join(storage_path(config), "+gitaly", "tmp")
    assert os.listdir(tmp) == []
    assert not os.path.exists(path + ".lock")


async def test_create_sha256_repository_and_object_format(client: Client, config: Config) -> None:
    await client.unary(
        SERVICE + "CreateRepository",
        pb.CreateRepositoryRequest(
            repository=repo("sha.git"), object_format=shared_pb2.OBJECT_FORMAT_SHA256
        ),
        pb.CreateRepositoryResponse,
    )
    path = os.path.join(storage_path(config), "sha.git")
    assert git("rev-parse", "--show-object-format", cwd=path).strip() == "sha256"
    response = await client.unary(
        SERVICE + "ObjectFormat",
        pb.ObjectFormatRequest(repository=repo("sha.git")),
        pb.ObjectFormatResponse,
    )
    assert response.format == shared_pb2.OBJECT_FORMAT_SHA256


@pytest.mark.parametrize("object_format", ["sha1", "sha256"])
async def test_object_format_agrees_with_git(
    client: Client, config: Config, object_format: str
) -> None:
    path = os.path.join(storage_path(config), f"{object_format}.git")
    git("init", "--bare", "--quiet", f"--object-format={object_format}", path)
    response = await client.unary(
        SERVICE + "ObjectFormat",
        pb.ObjectFormatRequest(repository=repo(f"{object_format}.git")),
        pb.ObjectFormatResponse,
    )
    expected = git("rev-parse", "--show-object-format", cwd=path).strip()
    assert shared_pb2.ObjectFormat.Name(response.format) == f"OBJECT_FORMAT_{expected.upper()}"


async def test_create_existing_repository_is_already_exists(client: Client, config: Config) -> None:
    path = os.path.join(storage_path(config), "there.git")
    git("init", "--bare", "--quiet", path)
    before = sorted(os.listdir(path))
    error = await client.error(
        SERVICE + "CreateRepository",
        pb.CreateRepositoryRequest(repository=repo("there.git")),
        pb.CreateRepositoryResponse,
    )
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == "repository exists already"
    assert sorted(os.listdir(path)) == before


async def test_create_with_bad_branch_name_leaves_nothing(client: Client, config: Config) -> None:
    error = await client.error(
        SERVICE + "CreateRepository",
        pb.CreateRepositoryRequest(repository=repo("bad.git"), default_branch=b"a..b"),
        pb.CreateRepositoryResponse,
    )
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "creating repository" in error.details()
    assert not os.path.exists(os.path.join(storage_path(config), "bad.git"))
    assert os.listdir(os.path.join(storage_path(config), "+gitaly", "tmp")) == []


async def test_concurrent_creates_make_one_repository(client: Client, config: Config) -> None:
    codes: list[grpc.StatusCode] = []

    async def create() -> None:
        try:
            await client.unary(
                SERVICE + "CreateRepository",
                pb.CreateRepositoryRequest(repository=repo("race.git")),
                pb.CreateRepositoryResponse,
            )
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(create)
    assert codes.count(grpc.StatusCode.OK) == 1
    assert set(codes) <= {
        grpc.StatusCode.OK,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
    assert git(
        "rev-parse", "--is-bare-repository", cwd=os.path.join(storage_path(config), "race.git")
    )


async def test_remove_repository(client: Client, config: Config) -> None:
    path = os.path.join(storage_path(config), "gone.git")
    git("init", "--bare", "--quiet", path)
    await client.unary(
        SERVICE + "RemoveRepository",
        pb.RemoveRepositoryRequest(repository=repo("gone.git")),
        pb.RemoveRepositoryResponse,
    )
    assert not os.path.exists(path)
    assert not await exists(client, repo("gone.git"))
    assert os.listdir(os.path.join(storage_path(config), "+gitaly", "tmp")) == []
    error = await client.error(
        SERVICE + "RemoveRepository",
        pb.RemoveRepositoryRequest(repository=repo("gone.git")),
        pb.RemoveRepositoryResponse,
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "repository not found")


async def test_repository_exists_never_not_found(client: Client, config: Config) -> None:
    assert not await exists(client, repo("missing.git"))
    # A directory that is not a git directory does not count either.
    os.makedirs(os.path.join(storage_path(config), "plain"))
    assert not await exists(client, repo("plain"))


INVALID = [
    ("no repository", None, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
    ("empty path", repo(""), grpc.StatusCode.INVALID_ARGUMENT, "repository path not set"),
    (
        "empty storage",
        repo("a.git", storage=""),
        grpc.StatusCode.INVALID_ARGUMENT,
        "storage name not set",
    ),
    (
        "unknown storage",
        repo("a.git", storage="nope"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "storage name not found",
    ),
    (
        "dotdot",
        repo("../escape.git"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "relative path escapes root directory",
    ),
    (
        "nested dotdot",
        repo("a/../../escape.git"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "relative path escapes root directory",
    ),
]


@pytest.mark.parametrize(
    ("repository", "code", "message"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
@pytest.mark.parametrize(
    "method", ["RepositoryExists", "ObjectFormat", "CreateRepository", "RemoveRepository"]
)
async def test_invalid_repositories(
    client: Client,
    method: str,
    repository: shared_pb2.Repository | None,
    code: grpc.StatusCode,
    message: str,
) -> None:
    request_type = getattr(pb, f"{method}Request")
    response_type = getattr(pb, f"{method}Response")
    error = await client.error(SERVICE + method, request_type(repository=repository), response_type)
    assert (error.code(), error.details()) == (code, message)


async def test_missing_and_broken_repositories(client: Client, config: Config) -> None:
    error = await client.error(
        SERVICE + "ObjectFormat",
        pb.ObjectFormatRequest(repository=repo("missing.git")),
        pb.ObjectFormatResponse,
    )
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "repository not found")
    broken = os.path.join(storage_path(config), "broken.git")
    git("init", "--bare", "--quiet", broken)
    os.rename(os.path.join(broken, "refs"), os.path.join(broken, "refs.moved"))
    error = await client.error(
        SERVICE + "ObjectFormat",
        pb.ObjectFormatRequest(repository=repo("broken.git")),
        pb.ObjectFormatResponse,
    )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == 'repository not valid: "refs" does not exist'


async def test_traversal_never_touches_outside(
    client: Client, config: Config, server: RunningServer
) -> None:
    outside = os.path.join(os.path.dirname(storage_path(config)), "outside.git")
    error = await client.error(
        SERVICE + "CreateRepository",
        pb.CreateRepositoryRequest(repository=repo("../outside.git")),
        pb.CreateRepositoryResponse,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not os.path.exists(outside)

"""OptimizeRepository and PruneUnreachableObjects over a real server and grpcio."""

from __future__ import annotations

import os

import grpc
import pytest

from tests.git.housekeeping_helpers import (
    add_loose_refs,
    all_objects,
    assert_fsck_clean,
    exists,
    new_repository,
    object_counts,
    references,
    unreachable_commit,
)
from tests.helpers import Client, storage_path
from tests.helpers import repository as repo
from tests.repos import git
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer
from trio_gitaly.rpc.gen.gitaly import repository_pb2 as pb

SERVICE = "/gitaly.RepositoryService/"
OPTIMIZE = SERVICE + "OptimizeRepository"
PRUNE = SERVICE + "PruneUnreachableObjects"
MINUTE_S = 60


def make(config: Config, name: str, **shape: int) -> str:
    path = os.path.join(storage_path(config), name)
    new_repository(path, **shape)
    return path


async def test_optimize_reduces_loose_objects_and_packs(
    client: Client, config: Config, server: RunningServer
) -> None:
    path = make(config, "project.git", packs=3, loose_blobs=1100)
    add_loose_refs(path, 10)
    refs_before, objects_before = references(path), all_objects(path)
    loose_before, packs_before = object_counts(path)

    await client.unary(
        OPTIMIZE,
        pb.OptimizeRepositoryRequest(repository=repo("project.git")),
        pb.OptimizeRepositoryResponse,
    )

    loose, packs = object_counts(path)
    assert loose < loose_before
    assert loose == 0
    assert packs < packs_before
    assert_fsck_clean(path)
    assert references(path) == refs_before
    assert all_objects(path) >= objects_before
    registry = server.metrics.registry
    total = {"housekeeping_task": "total", "status": "success"}
    assert registry.get_sample_value("gitaly_housekeeping_tasks_total", total) == 1
    packed = {"housekeeping_task": "packed_refs", "status": "success"}
    assert registry.get_sample_value("gitaly_housekeeping_tasks_total", packed) == 1


async def test_eager_optimize_repacks_into_one_pack(client: Client, config: Config) -> None:
    path = make(config, "eager.git", packs=2)
    await client.unary(
        OPTIMIZE,
        pb.OptimizeRepositoryRequest(repository=repo("eager.git")),
        pb.OptimizeRepositoryResponse,
    )
    git(path, "update-ref", "refs/heads/again", "HEAD")  # one loose ref: below the threshold

    await client.unary(
        OPTIMIZE,
        pb.OptimizeRepositoryRequest(
            repository=repo("eager.git"), strategy=pb.OptimizeRepositoryRequest.STRATEGY_EAGER
        ),
        pb.OptimizeRepositoryResponse,
    )

    assert object_counts(path) == (0, 1)  # nothing unreachable: no cruft pack either
    assert not os.path.exists(os.path.join(path, "refs", "heads", "again"))  # packed
    assert "refs/heads/again" in references(path)
    assert_fsck_clean(path)


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (
            pb.OptimizeRepositoryRequest(repository=repo("valid.git"), strategy=12),  # type: ignore[arg-type]
            grpc.StatusCode.INVALID_ARGUMENT,
            "unsupported optimization strategy 12",
        ),
        (pb.OptimizeRepositoryRequest(), grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (
            pb.OptimizeRepositoryRequest(repository=repo("missing.git")),
            grpc.StatusCode.NOT_FOUND,
            None,
        ),
        (
            pb.OptimizeRepositoryRequest(repository=repo("valid.git", storage="nope")),
            grpc.StatusCode.INVALID_ARGUMENT,
            None,
        ),
    ],
    ids=["strategy", "unset", "missing", "storage"],
)
async def test_optimize_refuses_bad_requests(
    client: Client,
    config: Config,
    request_: pb.OptimizeRepositoryRequest,
    code: grpc.StatusCode,
    message: str | None,
) -> None:
    path = make(config, "valid.git")
    packs_before = sorted(os.listdir(os.path.join(path, "objects", "pack")))

    error = await client.error(OPTIMIZE, request_, pb.OptimizeRepositoryResponse)

    assert error.code() == code
    if message is not None:
        assert error.details() == message
    assert sorted(os.listdir(os.path.join(path, "objects", "pack"))) == packs_before


async def test_prune_deletes_only_old_unreachable_objects(client: Client, config: Config) -> None:
    path = make(config, "prune.git")
    reachable = git(path, "rev-parse", "HEAD").decode().strip()
    old = unreachable_commit(path, "old", age_s=31 * MINUTE_S)
    recent = unreachable_commit(path, "recent", age_s=28 * MINUTE_S)
    refs_before = references(path)

    await client.unary(
        PRUNE,
        pb.PruneUnreachableObjectsRequest(repository=repo("prune.git")),
        pb.PruneUnreachableObjectsResponse,
    )

    assert not exists(path, old)
    assert exists(path, recent)  # kept in a cruft pack until its 30 minutes are up
    assert exists(path, reachable)
    assert references(path) == refs_before
    assert os.path.exists(os.path.join(path, "objects", "info", "commit-graphs"))
    assert_fsck_clean(path)


async def test_prune_refuses_object_pools_and_bad_requests(client: Client, config: Config) -> None:
    pool = "@pools/ab/cd/abcd" + "0" * 60 + ".git"
    path = make(config, pool)
    old = unreachable_commit(path, "old", age_s=31 * MINUTE_S)

    error = await client.error(
        PRUNE,
        pb.PruneUnreachableObjectsRequest(repository=repo(pool)),
        pb.PruneUnreachableObjectsResponse,
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "pruning objects for object pool"
    assert exists(path, old)

    error = await client.error(
        PRUNE, pb.PruneUnreachableObjectsRequest(), pb.PruneUnreachableObjectsResponse
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = await client.error(
        PRUNE,
        pb.PruneUnreachableObjectsRequest(repository=repo("missing.git")),
        pb.PruneUnreachableObjectsResponse,
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND

"""HousekeepingManager.optimize on real repositories: what it does, and what it keeps."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from tests.git.housekeeping_helpers import (
    add_loose_blobs,
    add_loose_refs,
    add_packs,
    all_objects,
    assert_fsck_clean,
    exists,
    loose_refs,
    new_repository,
    object_counts,
    references,
)
from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.command import CommandFactory
from trio_gitaly.git.housekeeping import HousekeepingManager, Strategy
from trio_gitaly.git.version import detect

DAY_S = 24 * 3600


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def manager(registry: CollectorRegistry) -> HousekeepingManager:
    return HousekeepingManager(CommandFactory(await detect()), registry)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def non_cruft_packs(path: str) -> list[str]:
    pack_dir = os.path.join(path, "objects", "pack")
    names = os.listdir(pack_dir)
    return [n for n in names if n.endswith(".pack") and n[: -len(".pack")] + ".mtimes" not in names]


async def test_heuristical_optimize_reduces_loose_objects_and_packs(
    manager: HousekeepingManager, tmp_path: str, registry: CollectorRegistry
) -> None:
    path = os.path.join(tmp_path, "repo.git")
    new_repository(path, packs=3, loose_blobs=1100)
    add_loose_refs(path, 10)
    refs_before, objects_before = references(path), all_objects(path)
    loose_before, packs_before = object_counts(path)
    assert loose_before >= 1100
    assert packs_before == 3

    result = await manager.optimize(path)

    assert result.ran
    # No full repack yet and several packs: a full repack, unreachable objects kept in a
    # cruft pack (they are recent); more than 16 loose refs: packed; no graph: written.
    assert result.optimizations == {
        "packed_objects_full_with_cruft": "success",
        "written_bitmap": "success",
        "written_multi_pack_index": "success",
        "packed_refs": "success",
        "written_commit_graph_full": "success",
    }
    loose_after, packs_after = object_counts(path)
    assert loose_after == 0
    assert packs_after < packs_before
    assert len(non_cruft_packs(path)) == 1
    assert_fsck_clean(path)
    assert references(path) == refs_before
    assert all_objects(path) >= objects_before
    assert loose_refs(path) == []
    assert os.path.exists(os.path.join(path, "objects", "info", "commit-graphs"))
    assert os.path.exists(os.path.join(path, ".gitaly-full-repack-timestamp"))
    total = {"housekeeping_task": "total", "status": "success"}
    assert sample(registry, "gitaly_housekeeping_tasks_total", **total) == 1


async def test_a_well_kept_repository_is_left_alone(
    manager: HousekeepingManager, tmp_path: str
) -> None:
    path = os.path.join(tmp_path, "repo.git")
    new_repository(path, packs=2)
    await manager.optimize(path)
    packs = sorted(os.listdir(os.path.join(path, "objects", "pack")))

    result = await manager.optimize(path)

    assert result.ran
    assert result.optimizations == {}
    assert sorted(os.listdir(os.path.join(path, "objects", "pack"))) == packs


async def test_loose_objects_past_the_limit_are_rolled_into_a_pack(
    manager: HousekeepingManager, tmp_path: str
) -> None:
    path = os.path.join(tmp_path, "repo.git")
    new_repository(path, packs=2)
    await manager.optimize(path)  # a full repack: multi-pack-index and a fresh timestamp
    blobs = add_loose_blobs(path, 1025)
    _, packs_before = object_counts(path)

    result = await manager.optimize(path)

    # After any repack the graph gets the new commits: incrementally, nothing expired.
    assert result.optimizations == {
        "packed_objects_incremental_with_unreachable": "success",
        "written_commit_graph_incremental": "success",
    }
    loose, packs = object_counts(path)
    assert loose == 0
    assert packs == packs_before + 1
    assert all(exists(path, oid) for oid in blobs[:10])
    assert_fsck_clean(path)


async def test_few_loose_objects_stay_loose(manager: HousekeepingManager, tmp_path: str) -> None:
    path = os.path.join(tmp_path, "repo.git")
    new_repository(path, packs=2)
    await manager.optimize(path)
    add_loose_blobs(path, 1024)  # the limit is "more than 1024"

    result = await manager.optimize(path)

    assert "packed_objects_incremental_with_unreachable" not in result.optimizations
    assert object_counts(path)[0] == 1024


async def test_new_packs_past_the_tolerance_get_a_geometric_repack(
    manager: HousekeepingManager, tmp_path: str
) -> None:
    path = os.path.join(tmp_path, "repo.git")
    new_repository(path, packs=2)
    await manager.optimize(path)
    add_packs(path, 3, prefix="later")  # 3 packs the multi-pack-index does not track: > 2
    objects_before = all_objects(path)
    _, packs_before = object_counts(path)

    result = await manager.optimize(path)

    assert result.optimizations["packed_objects_geometric"] == "success"
    assert result.optimizations["written_multi_pack_index"] == "success"
    assert object_counts(path)[1] < packs_before
    assert all_objects(path) == objects_before
    assert_fsck_clean(path)


async def test_few_loose_refs_stay_loose(manager: HousekeepingManager, tmp_path: str) -> None:
    path = os.path.join(tmp_path, "repo.git")
    new_repository(path)  # 8 loose refs, no packed-refs: the threshold is 16
    refs_before = loose_refs(path)

    result = await manager.optimize(path)

    assert "packed_refs" not in result.optimizations
    assert sorted(loose_refs(path)) == sorted(refs_before)


async def test_eager_repacks_everything_and_prunes_stale_objects(
    manager: HousekeepingManager, tmp_path: str
) -> None:
    path = os.path.join(tmp_path, "repo.git")
    new_repository(path, packs=3)
    await manager.optimize(path)  # the heuristics would now leave the packs alone
    add_packs(path, 1, prefix="later")
    stale = add_loose_blobs(path, 5, age_s=11 * DAY_S)
    recent = add_loose_blobs(path, 5)
    refs_before = references(path)

    result = await manager.optimize(path, strategy=Strategy.EAGER)

    assert result.optimizations == {
        "packed_objects_full_with_cruft": "success",
        "written_bitmap": "success",
        "written_multi_pack_index": "success",
        "pruned_objects": "success",
        "packed_refs": "success",
        "written_commit_graph_full": "success",
    }
    assert len(non_cruft_packs(path)) == 1
    assert object_counts(path)[0] == 0
    # Unreachable for longer than the 10-day grace period: gone; recent ones: kept.
    assert not any(exists(path, oid) for oid in stale)
    assert all(exists(path, oid) for oid in recent)
    assert references(path) == refs_before
    assert_fsck_clean(path)


async def test_a_second_concurrent_optimize_does_nothing(
    manager: HousekeepingManager, tmp_path: str, registry: CollectorRegistry
) -> None:
    path = os.path.join(tmp_path, "repo.git")
    new_repository(path, packs=3)
    results = []

    async with trio.open_nursery() as nursery:

        async def first() -> None:
            results.append(await manager.optimize(path, strategy=Strategy.EAGER))

        nursery.start_soon(first)
        # Blocked in its first git command or thread: it holds the repository.
        await trio.testing.wait_all_tasks_blocked()
        assert manager.is_running(path)
        second = await manager.optimize(os.path.join(path, "."), strategy=Strategy.EAGER)
        assert not second.ran
        assert second.optimizations == {}

    assert results[0].ran
    assert not manager.is_running(path)
    total = {"housekeeping_task": "total", "status": "success"}
    assert sample(registry, "gitaly_housekeeping_tasks_total", **total) == 1


async def test_a_failed_step_stops_the_run(
    manager: HousekeepingManager, tmp_path: str, registry: CollectorRegistry
) -> None:
    path = os.path.join(tmp_path, "repo.git")
    new_repository(path, packs=3)
    add_loose_refs(path, 20)
    # A fresh lock (younger than its 15-minute grace) that repack's index write needs.
    with open(os.path.join(path, "objects", "pack", "multi-pack-index.lock"), "w"):
        pass
    refs_before = sorted(loose_refs(path))

    with pytest.raises(GitalyError) as failed:
        await manager.optimize(path)

    assert failed.value.code is StatusCode.INTERNAL
    assert failed.value.message.startswith("could not repack: ")
    # Neither pack-refs nor commit-graph ran after the failed repack.
    assert sorted(loose_refs(path)) == refs_before
    assert not os.path.exists(os.path.join(path, "objects", "info", "commit-graphs"))
    assert not manager.is_running(path)
    labels = {"housekeeping_task": "packed_objects_full_with_cruft", "status": "failure"}
    assert sample(registry, "gitaly_housekeeping_tasks_total", **labels) == 1
    total = {"housekeeping_task": "total", "status": "failure"}
    assert sample(registry, "gitaly_housekeeping_tasks_total", **total) == 1


async def test_optimize_reports_repository_state(
    manager: HousekeepingManager, tmp_path: str, registry: CollectorRegistry
) -> None:
    path = os.path.join(tmp_path, "repo.git")
    new_repository(path, packs=2)

    await manager.optimize(path)
    await manager.optimize(path)

    # First run: no multi-pack-index yet; second run: there is one.
    midx = "gitaly_housekeeping_data_structure_existence_total"
    assert sample(registry, midx, data_structure="multi_pack_index", exists="false") == 1
    assert sample(registry, midx, data_structure="multi_pack_index", exists="true") == 1
    packs = "gitaly_housekeeping_data_structure_count_count"
    assert sample(registry, packs, data_structure="packfiles") == 2
    latency = "gitaly_housekeeping_tasks_latency_count"
    assert sample(registry, latency, housekeeping_task="repack", stage="apply") == 1
    assert sample(registry, latency, housekeeping_task="total", stage="apply") == 2

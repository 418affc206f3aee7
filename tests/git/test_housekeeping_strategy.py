"""The strategies' thresholds, on repository states built by hand, and repack's argv."""

from __future__ import annotations

import dataclasses
import math

import pytest

from trio_gitaly.git.housekeeping import (
    EagerStrategy,
    HeuristicalStrategy,
    RepackConfig,
    RepackStrategy,
    RepositoryInfo,
    repack_flags,
)
from trio_gitaly.git.housekeeping._info import (
    Alternates,
    CommitGraph,
    MultiPackIndex,
    is_object_pool,
)
from trio_gitaly.git.version import GitVersion
from trio_gitaly.storage.usage import LooseObjects, Packfiles, References

NOW = 1_800_000_000.0
DAY_S = 24 * 3600
MIB = 1024 * 1024
GOOD_GRAPH = CommitGraph(exists=True, chain_length=1, bloom_filters=True, generation_data=True)


def info(**changes: object) -> RepositoryInfo:
    """A well-kept repository: one pack in a multi-pack-index, repacked yesterday."""
    base = RepositoryInfo(
        is_object_pool=False,
        loose_objects=LooseObjects(),
        packfiles=Packfiles(count=1, size=MIB),
        references=References(loose_count=1, packed_size=1000),
        multi_pack_index=MultiPackIndex(exists=True, packfile_count=1),
        commit_graph=GOOD_GRAPH,
        last_full_repack=NOW - DAY_S,
    )
    return dataclasses.replace(base, **changes)


def heuristical(**changes: object) -> HeuristicalStrategy:
    return HeuristicalStrategy(info(**changes), now=NOW)


def test_a_well_kept_repository_needs_nothing() -> None:
    strategy = heuristical()
    assert strategy.repack_objects() is None
    assert strategy.prune_objects() is None
    assert not strategy.pack_references()
    assert strategy.write_commit_graph() is None


def test_an_empty_repository_needs_no_repack() -> None:
    assert (
        heuristical(packfiles=Packfiles(), multi_pack_index=MultiPackIndex()).repack_objects()
        is None
    )


@pytest.mark.parametrize(
    ("packs", "cruft", "last_full", "expected"),
    [
        (2, 0, None, RepackStrategy.FULL_WITH_CRUFT),
        (2, 0, NOW - 5 * DAY_S - 1, RepackStrategy.FULL_WITH_CRUFT),
        (2, 0, NOW - 5 * DAY_S + 60, None),  # cooling down; the index tracks both packs
        (2, 1, None, None),  # one pack plus a cruft pack is what a full repack leaves
    ],
)
def test_full_repack_of_several_packs_after_the_cooldown(
    packs: int, cruft: int, last_full: float | None, expected: RepackStrategy | None
) -> None:
    strategy = heuristical(
        packfiles=Packfiles(count=packs, size=MIB, cruft_count=cruft),
        multi_pack_index=MultiPackIndex(exists=True, packfile_count=packs),
        last_full_repack=last_full,
    )
    repack = strategy.repack_objects()
    assert (repack.strategy if repack else None) == expected
    if repack is not None:
        assert repack.cruft_expire_before == NOW - 10 * DAY_S
        assert repack.write_bitmap
        assert repack.write_multi_pack_index


def test_changed_alternates_force_a_full_repack_without_bitmap() -> None:
    alternates = Alternates(exists=True, object_directories=("../pool",), modified_at=NOW - 60)
    repack = heuristical(alternates=alternates).repack_objects()
    assert repack is not None
    assert repack.strategy is RepackStrategy.FULL_WITH_CRUFT
    assert not repack.write_bitmap


def test_object_pools_keep_unreachable_objects_and_are_never_pruned() -> None:
    pool = info(is_object_pool=True, last_full_repack=None, packfiles=Packfiles(count=3))
    repack = HeuristicalStrategy(pool, now=NOW).repack_objects()
    assert repack == RepackConfig(
        RepackStrategy.FULL_WITH_UNREACHABLE, write_bitmap=True, write_multi_pack_index=True
    )
    stale = LooseObjects(count=5000, stale_count=5000)
    assert (
        HeuristicalStrategy(dataclasses.replace(pool, loose_objects=stale), now=NOW).prune_objects()
        is None
    )
    assert EagerStrategy(pool, now=NOW).prune_objects() is None


def test_a_missing_multi_pack_index_gets_a_geometric_repack() -> None:
    repack = heuristical(multi_pack_index=MultiPackIndex()).repack_objects()
    assert repack is not None
    assert repack.strategy is RepackStrategy.GEOMETRIC


@pytest.mark.parametrize(
    ("size_mib", "tolerated"),
    [(0, 2), (5, 2), (6, 3), (10, 3), (100, 7), (1024, 11), (100 * 1024, 19)],
)
def test_untracked_packs_tolerated_grow_with_the_pack_size(size_mib: int, tolerated: int) -> None:
    def decide(untracked: int) -> RepackConfig | None:
        return heuristical(
            packfiles=Packfiles(count=1 + untracked, size=size_mib * MIB, cruft_count=untracked),
            multi_pack_index=MultiPackIndex(exists=True, packfile_count=1),
        ).repack_objects()

    assert decide(tolerated) is None
    repack = decide(tolerated + 1)
    assert repack is not None
    assert repack.strategy is RepackStrategy.GEOMETRIC


def test_loose_objects_past_1024_get_an_incremental_repack() -> None:
    assert heuristical(loose_objects=LooseObjects(count=1024)).repack_objects() is None
    repack = heuristical(loose_objects=LooseObjects(count=1025)).repack_objects()
    assert repack == RepackConfig(RepackStrategy.INCREMENTAL_WITH_UNREACHABLE)


def test_prune_once_more_than_1024_loose_objects_are_stale() -> None:
    assert (
        heuristical(loose_objects=LooseObjects(count=2000, stale_count=1024)).prune_objects()
        is None
    )
    prune = heuristical(loose_objects=LooseObjects(count=2000, stale_count=1025)).prune_objects()
    assert prune is not None
    assert prune.expire_before == NOW - 10 * DAY_S


@pytest.mark.parametrize(
    ("packed_bytes", "threshold"),
    [(0, 16), (1_000, 16), (10_000, 32), (100_000, 49), (1_000_000, 65), (100_000_000, 98)],
)
def test_loose_refs_threshold_grows_with_packed_refs(packed_bytes: int, threshold: int) -> None:
    expected = int(max(16, math.log(max(packed_bytes, 1) / 100) / math.log(1.15)))
    assert threshold == expected  # the table above is the formula's, spelled out
    refs = References(loose_count=threshold - 1, packed_size=packed_bytes)
    assert not heuristical(references=refs).pack_references()
    refs = References(loose_count=threshold, packed_size=packed_bytes)
    assert heuristical(references=refs).pack_references()


def test_commit_graph_decisions() -> None:
    no_refs = References(loose_count=0, packed_size=0)
    assert heuristical(references=no_refs, commit_graph=CommitGraph()).write_commit_graph() is None
    for graph in (
        CommitGraph(),
        CommitGraph(exists=True),  # a single file, not a chain
        dataclasses.replace(GOOD_GRAPH, bloom_filters=False),
        dataclasses.replace(GOOD_GRAPH, generation_data=False),
    ):
        written = heuristical(commit_graph=graph).write_commit_graph()
        assert written is not None
        assert written.replace_chain
    # After an incremental repack the chain grows; after one expiring objects, replaced.
    incremental = heuristical(loose_objects=LooseObjects(count=2000)).write_commit_graph()
    assert incremental is not None
    assert not incremental.replace_chain
    full = heuristical(packfiles=Packfiles(count=2), last_full_repack=None).write_commit_graph()
    assert full is not None
    assert full.replace_chain


def test_eager_does_everything() -> None:
    strategy = EagerStrategy(info(), now=NOW)
    assert strategy.repack_objects().strategy is RepackStrategy.FULL_WITH_CRUFT
    assert strategy.prune_objects() is not None
    assert strategy.pack_references()
    assert strategy.write_commit_graph().replace_chain


@pytest.mark.parametrize(
    ("path", "pool"),
    [
        ("/s/@pools/ab/cd/abcd" + "0" * 60 + ".git", True),
        ("/s/@pools/ab/cd/ffff" + "0" * 60 + ".git", False),  # hash does not match the dirs
        ("/s/@cluster/pools/ab/cd/42", True),
        ("/s/@hashed/ab/cd/abcd" + "0" * 60 + ".git", False),
    ],
)
def test_object_pools_are_known_by_their_path(path: str, pool: bool) -> None:
    assert is_object_pool(path) is pool


EXPIRY = 1_136_214_245.0  # Mon, 02 Jan 2006 15:04:05 GMT
CRUFT = RepackConfig(
    RepackStrategy.FULL_WITH_CRUFT,
    write_bitmap=True,
    write_multi_pack_index=True,
    cruft_expire_before=EXPIRY,
)


def test_full_repack_uses_cruft_packs_from_git_2_37() -> None:
    assert repack_flags(CRUFT, GitVersion(2, 39, 5)) == [
        "--cruft",
        "--pack-kept-objects",
        "-l",
        "-d",
        "--cruft-expiration=Mon, 02 Jan 2006 15:04:05 GMT",
        "--write-midx",
    ]


def test_full_repack_on_git_2_36_loosens_unreachable_objects_instead() -> None:
    assert repack_flags(CRUFT, GitVersion(2, 36, 0)) == [
        "-A",
        "-l",
        "-d",
        "--pack-kept-objects",
        "--unpack-unreachable=Mon, 02 Jan 2006 15:04:05 GMT",
        "--write-midx",
    ]


def test_other_repack_flags() -> None:
    version = GitVersion(2, 39, 5)
    geometric = RepackConfig(RepackStrategy.GEOMETRIC, write_multi_pack_index=True)
    assert repack_flags(geometric, version) == ["--geometric=2", "-d", "-l", "--write-midx"]
    pool = RepackConfig(RepackStrategy.FULL_WITH_UNREACHABLE)
    assert repack_flags(pool, version) == ["-a", "-l", "-d", "--keep-unreachable"]
    with pytest.raises(ValueError, match="not a git-repack strategy"):
        repack_flags(RepackConfig(RepackStrategy.INCREMENTAL_WITH_UNREACHABLE), version)

"""Deciding, from a repository's state, which optimisations to run and how.

Two strategies, as Gitaly's: heuristical (the default) weighs the repository's state and
does only what its thresholds call for, scaling them with the repository's size so that
big, busy repositories are not rewritten on every run; eager does everything.

Facts: Gitaly's internal/git/housekeeping/{optimization_strategy,objects,commit_graph}.go.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from trio_gitaly.storage.usage import FILES_BACKEND

if TYPE_CHECKING:
    from trio_gitaly.git.housekeeping._info import RepositoryInfo

#: More loose objects than this are rolled into a pack; more stale ones are pruned.
LOOSE_OBJECT_LIMIT: Final = 1024
#: Loose and cruft objects unreachable for longer than this may be deleted.
STALE_OBJECTS_GRACE_PERIOD_S: Final = 10 * 24 * 3600
#: At most one full repack per this long (unless alternates changed).
FULL_REPACK_COOLDOWN_S: Final = 5 * 24 * 3600
#: Packs the multi-pack-index does not track yet, tolerated at any size ...
MIN_UNTRACKED_PACKS: Final = 2
#: ... and growing as log(total pack MiB) / log(this), so big repositories repack rarer.
UNTRACKED_PACKS_LOG_BASE: Final = 1.8
#: Loose refs tolerated at any packed-refs size ...
MIN_LOOSE_REFS: Final = 16
#: ... and growing as log(packed-refs bytes / 100) / log(this): ~16 more per 10x refs.
LOOSE_REFS_LOG_BASE: Final = 1.15
# packed-refs holds roughly this many bytes per reference.
_PACKED_REF_BYTES: Final = 100
_MIB: Final = 1024 * 1024


class Strategy(enum.Enum):
    """Which strategy `HousekeepingManager.optimize` decides with."""

    HEURISTICAL = "heuristical"
    EAGER = "eager"


class RepackStrategy(enum.StrEnum):
    """How objects are repacked; the values name the `packed_objects_*` optimisation."""

    #: Every loose object into one new pack, reachable or not; no graph walk.
    INCREMENTAL_WITH_UNREACHABLE = "incremental_with_unreachable"
    #: Reachable objects into one pack, unreachable ones into a cruft pack (expired ones
    #: dropped).
    FULL_WITH_CRUFT = "full_with_cruft"
    #: Everything into one pack, unreachable packed objects kept (object pools).
    FULL_WITH_UNREACHABLE = "full_with_unreachable"
    #: Merge packs until their sizes form a geometric sequence (factor 2).
    GEOMETRIC = "geometric"


@dataclass(frozen=True)
class RepackConfig:
    """How to repack.

    Attributes:
        strategy: the kind of repack.
        write_bitmap: write a reachability bitmap (only without alternates, which break
            the closure a bitmap needs).
        write_multi_pack_index: write a multi-pack-index over the resulting packs.
        cruft_expire_before: with FULL_WITH_CRUFT, drop unreachable objects last touched
            before this time (epoch seconds); None keeps them all.
    """

    strategy: RepackStrategy
    write_bitmap: bool = False
    write_multi_pack_index: bool = False
    cruft_expire_before: float | None = None

    @property
    def is_full(self) -> bool:
        """Whether this rewrites all objects (and so resets the full-repack clock)."""
        return self.strategy in (
            RepackStrategy.FULL_WITH_CRUFT,
            RepackStrategy.FULL_WITH_UNREACHABLE,
        )


@dataclass(frozen=True)
class PruneConfig:
    """Prune unreachable loose objects last touched before `expire_before` (epoch s)."""

    expire_before: float


@dataclass(frozen=True)
class CommitGraphConfig:
    """Write the commit-graph; `replace_chain` rewrites the whole chain."""

    replace_chain: bool


class OptimizationStrategy(Protocol):
    """Answers, for one repository state, what each optimisation step should do."""

    def repack_objects(self) -> RepackConfig | None:
        """How to repack objects, or None to leave them."""
        ...

    def prune_objects(self) -> PruneConfig | None:
        """How to prune stale loose objects, or None to leave them."""
        ...

    def pack_references(self) -> bool:
        """Whether to pack loose references."""
        ...

    def write_commit_graph(self) -> CommitGraphConfig | None:
        """How to write the commit-graph, or None to leave it."""
        ...


class HeuristicalStrategy:
    """Optimise only what the repository's state calls for (Gitaly's default)."""

    def __init__(self, info: RepositoryInfo, *, now: float) -> None:
        self._info = info
        self._now = now
        self._expire_before = now - STALE_OBJECTS_GRACE_PERIOD_S

    def repack_objects(self) -> RepackConfig | None:
        """Full, geometric, incremental or nothing; see the comments for each threshold."""
        info = self._info
        packs = info.packfiles
        if packs.count == 0 and info.loose_objects.count == 0:
            return None
        bitmap = not info.alternates.object_directories
        full = _full_repack(info, self._expire_before)
        geometric = RepackConfig(
            RepackStrategy.GEOMETRIC, write_bitmap=bitmap, write_multi_pack_index=True
        )
        last_full = info.last_full_repack
        # Alternates that changed since the last full repack mean the repository likely
        # joined a pool: a full repack deduplicates what the pool now holds.
        alternates_changed = info.alternates.modified_at is not None and (
            last_full is None or info.alternates.modified_at > last_full
        )
        if alternates_changed:
            return full
        # Regular full repacks move unreachable objects into a cruft pack, which starts
        # their expiry clock, and refresh delta islands, which geometric repacks ignore.
        cooled_down = last_full is None or self._now - last_full > FULL_REPACK_COOLDOWN_S
        if packs.count - packs.cruft_count > 1 and cooled_down:
            return full
        # The next rule counts packs the multi-pack-index does not track: it needs one.
        if not info.multi_pack_index.exists:
            return geometric
        if _too_many_untracked_packs(info):
            return geometric
        # The pack layout is fine: just roll loose objects into a pack, the cheapest
        # repack there is (no reachability walk, no multi-pack-index or bitmap rewrite).
        if info.loose_objects.count > LOOSE_OBJECT_LIMIT:
            return RepackConfig(RepackStrategy.INCREMENTAL_WITH_UNREACHABLE)
        return None

    def prune_objects(self) -> PruneConfig | None:
        """Prune once enough loose objects outlived the grace period; never in pools."""
        if self._info.is_object_pool or self._info.loose_objects.stale_count <= LOOSE_OBJECT_LIMIT:
            return None
        return PruneConfig(self._expire_before)

    def pack_references(self) -> bool:
        """Pack when loose refs reach a threshold that grows with packed-refs' size."""
        refs = self._info.references
        if self._info.reftable_tables > 1:
            return True  # git itself decides whether the tables need compacting
        if refs.loose_count == 0:
            return False
        scaled = _log(refs.packed_size / _PACKED_REF_BYTES) / math.log(LOOSE_REFS_LOG_BASE)
        return refs.loose_count >= int(max(MIN_LOOSE_REFS, scaled))

    def write_commit_graph(self) -> CommitGraphConfig | None:
        """Rewrite a missing or outdated graph, or whenever objects may be deleted."""
        info = self._info
        refs = info.references
        if refs.backend == FILES_BACKEND and refs.loose_count == 0 and refs.packed_size == 0:
            return None  # no references, so no reachable commits to put in a graph
        # A graph naming pruned commits makes fsck complain and lookups of them fail.
        if self.prune_objects() is not None or _graph_needs_rewrite(info):
            return CommitGraphConfig(replace_chain=True)
        repack = self.repack_objects()
        if repack is None:
            return None
        expiring = (
            repack.strategy is RepackStrategy.FULL_WITH_CRUFT
            and repack.cruft_expire_before is not None
        )
        return CommitGraphConfig(replace_chain=expiring)


class EagerStrategy:
    """Optimise everything, whatever the repository's state."""

    def __init__(self, info: RepositoryInfo, *, now: float) -> None:
        self._info = info
        self._expire_before = now - STALE_OBJECTS_GRACE_PERIOD_S

    def repack_objects(self) -> RepackConfig:
        """Always a full repack."""
        return _full_repack(self._info, self._expire_before)

    def prune_objects(self) -> PruneConfig | None:
        """Always prune, except in object pools."""
        return None if self._info.is_object_pool else PruneConfig(self._expire_before)

    def pack_references(self) -> bool:
        """Always pack references."""
        return True

    def write_commit_graph(self) -> CommitGraphConfig:
        """Always rewrite the whole chain."""
        return CommitGraphConfig(replace_chain=True)


def make_strategy(strategy: Strategy, info: RepositoryInfo, *, now: float) -> OptimizationStrategy:
    """The strategy object for `strategy` on a repository in state `info`."""
    if strategy is Strategy.EAGER:
        return EagerStrategy(info, now=now)
    return HeuristicalStrategy(info, now=now)


def _full_repack(info: RepositoryInfo, expire_before: float) -> RepackConfig:
    bitmap = not info.alternates.object_directories
    if info.is_object_pool:
        # Pool members may need any object of the pool: keep the unreachable ones, packed
        # rather than exploded into loose objects.
        return RepackConfig(
            RepackStrategy.FULL_WITH_UNREACHABLE, write_bitmap=bitmap, write_multi_pack_index=True
        )
    return RepackConfig(
        RepackStrategy.FULL_WITH_CRUFT,
        write_bitmap=bitmap,
        write_multi_pack_index=True,
        cruft_expire_before=expire_before,
    )


def _too_many_untracked_packs(info: RepositoryInfo) -> bool:
    """Whether more packs were written since the last multi-pack-index than tolerated.

    The tolerance grows with the total pack size: 2 below 6 MiB, 7 at 100 MiB, 11 at
    1 GiB, 19 at 100 GiB.
    """
    packs = info.packfiles
    untracked = packs.count - info.multi_pack_index.packfile_count
    if untracked < 0:
        return True  # the index names packs that are gone: it is stale too
    scaled = _log(packs.size // _MIB) / math.log(UNTRACKED_PACKS_LOG_BASE)
    return untracked > int(max(MIN_UNTRACKED_PACKS, scaled))


def _graph_needs_rewrite(info: RepositoryInfo) -> bool:
    """No chain (none, or a single file), or one lacking Bloom filters or generation data.

    git refuses to add those extensions to a chain whose older layers lack them.
    """
    graph = info.commit_graph
    return graph.chain_length == 0 or not graph.bloom_filters or not graph.generation_data


def _log(value: float) -> float:
    return math.log(value) if value > 0 else -math.inf

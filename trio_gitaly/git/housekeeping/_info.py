"""What housekeeping knows about a repository before deciding what to optimise.

Loose objects, packfiles and references are counted exactly as RepositoryInfo counts
them (`storage/usage.py`); on top of that come the data structures the strategies weigh:
the multi-pack-index and how many packs it tracks, bitmaps, the commit-graph chain and
its extensions, alternates, and when the last full repack happened. Everything reads the
filesystem only and blocks: call `repository_info` in a worker thread.

Facts: Gitaly's stats.RepositoryInfo (internal/git/stats/{repository_info,commit_graph}.go).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar

from trio_gitaly.errors import internal
from trio_gitaly.storage.usage import (
    FILES_BACKEND,
    LooseObjects,
    Packfiles,
    References,
    loose_objects,
    packfiles,
    references,
)
from trio_gitaly.storage.usage_formats import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

#: Touched before every full repack; its mtime is when the last one started (Gitaly's
#: stats.FullRepackTimestampFilename, so a repository moved between servers keeps it).
FULL_REPACK_TIMESTAMP_FILENAME: Final = ".gitaly-full-repack-timestamp"

# Object pools are named by the relative path alone (Gitaly's IsPoolRepository). Both
# patterns are anchored at the end only, so they give the same answer on an absolute path.
_RAILS_POOL_RE: Final = re.compile(r"@pools/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})\.git$")
_PRAEFECT_POOL_RE: Final = re.compile(r"@cluster/pools/[0-9a-f]{2}/[0-9a-f]{2}/[0-9]+$")

_MIDX_HEADER_BYTES: Final = 12
_BITMAP_HEADER_BYTES: Final = 8
_BITMAP_HASH_CACHE_FLAG: Final = 0x4
_BITMAP_LOOKUP_TABLE_FLAG: Final = 0x10
_GRAPH_HEADER_BYTES: Final = 8
_GRAPH_CHUNK_ENTRY_BYTES: Final = 12

_T = TypeVar("_T")


@dataclass(frozen=True)
class Bitmap:
    """A pack or multi-pack-index bitmap and its optional extensions."""

    exists: bool = False
    hash_cache: bool = False
    lookup_table: bool = False


@dataclass(frozen=True)
class MultiPackIndex:
    """objects/pack/multi-pack-index and the number of packs it tracks."""

    exists: bool = False
    packfile_count: int = 0


@dataclass(frozen=True)
class CommitGraph:
    """The commit-graph: a chain (length > 0), a single file (length 0), or none."""

    exists: bool = False
    chain_length: int = 0
    bloom_filters: bool = False
    generation_data: bool = False
    generation_data_overflow: bool = False


@dataclass(frozen=True)
class Alternates:
    """objects/info/alternates: the object directories it names and its mtime."""

    exists: bool = False
    object_directories: tuple[str, ...] = ()
    modified_at: float | None = None


@dataclass(frozen=True)
class RepositoryInfo:
    """A repository's state as the optimisation strategies see it.

    Times are seconds since the epoch; None means "never" (no such file).
    """

    is_object_pool: bool
    loose_objects: LooseObjects
    packfiles: Packfiles
    references: References
    reftable_tables: int = 0
    multi_pack_index: MultiPackIndex = field(default_factory=MultiPackIndex)
    bitmap: Bitmap = field(default_factory=Bitmap)
    multi_pack_index_bitmap: Bitmap = field(default_factory=Bitmap)
    commit_graph: CommitGraph = field(default_factory=CommitGraph)
    alternates: Alternates = field(default_factory=Alternates)
    last_full_repack: float | None = None

    def log_fields(self) -> dict[str, object]:
        """The `repository_info` log field: the numbers an operator compares over time."""
        return {
            "is_object_pool": self.is_object_pool,
            "loose_objects": vars(self.loose_objects),
            "packfiles": {
                **vars(self.packfiles),
                "multi_pack_index": vars(self.multi_pack_index),
                "last_full_repack": self.last_full_repack,
            },
            "references": {**vars(self.references), "reftable_tables": self.reftable_tables},
            "commit_graph": vars(self.commit_graph),
            "alternates": {
                "exists": self.alternates.exists,
                "object_directories": list(self.alternates.object_directories),
            },
        }


def is_object_pool(repo_path: str) -> bool:
    """Whether the repository at `repo_path` is an object pool (never pruned)."""
    rails = _RAILS_POOL_RE.search(repo_path)
    if rails is not None and rails.group(3).startswith(rails.group(1) + rails.group(2)):
        return True
    return _PRAEFECT_POOL_RE.search(repo_path) is not None


def repository_info(repo_path: str, *, now_ns: int) -> RepositoryInfo:
    """Read the state of the repository at `repo_path`; blocking.

    Args:
        repo_path: the repository directory.
        now_ns: the wall-clock time loose objects are judged stale against.

    Raises:
        GitalyError: INTERNAL "deriving repository info: ..." when a file the strategies
            read is unreadable or malformed (Gitaly refuses to optimise such a repository).
    """
    try:
        loose = _step("counting loose objects", lambda: loose_objects(repo_path, now_ns))
        packs = _step("counting packfiles", lambda: packfiles(repo_path))
        refs = _step("checking references", lambda: references(repo_path))
        pack_dir = os.path.join(repo_path, "objects", "pack")
        return RepositoryInfo(
            is_object_pool=is_object_pool(repo_path),
            loose_objects=loose,
            packfiles=packs,
            references=refs,
            reftable_tables=0 if refs.backend == FILES_BACKEND else _reftable_tables(repo_path),
            multi_pack_index=_multi_pack_index(os.path.join(pack_dir, "multi-pack-index")),
            bitmap=_pack_bitmap(pack_dir),
            multi_pack_index_bitmap=_midx_bitmap(pack_dir),
            commit_graph=_step("checking commit-graph info", lambda: commit_graph(repo_path)),
            alternates=_step("reading alternates", lambda: alternates(repo_path)),
            last_full_repack=last_full_repack(repo_path),
        )
    except UsageError as exc:
        raise internal(f"deriving repository info: {exc}", repository_path=repo_path) from exc
    except OSError as exc:
        raise internal(
            f"deriving repository info: {exc.strerror or exc}", repository_path=repo_path
        ) from exc


def last_full_repack(repo_path: str) -> float | None:
    """When the last full repack started, from the timestamp file's mtime; None if never."""
    try:
        return os.stat(os.path.join(repo_path, FULL_REPACK_TIMESTAMP_FILENAME)).st_mtime
    except FileNotFoundError:
        return None


def commit_graph(repo_path: str) -> CommitGraph:
    """The commit-graph chain (or single file) and which extensions its files carry."""
    info_dir = os.path.join(repo_path, "objects", "info")
    graphs_dir = os.path.join(info_dir, "commit-graphs")
    try:
        with open(os.path.join(graphs_dir, "commit-graph-chain"), "rb") as chain:
            ids = chain.read().split()
    except FileNotFoundError:
        single = os.path.join(info_dir, "commit-graph")
        if not os.path.exists(single):
            return CommitGraph()
        paths, chain_length = [single], 0
    else:
        paths = [
            os.path.join(graphs_dir, f"graph-{i.decode('ascii', 'replace')}.graph") for i in ids
        ]
        chain_length = len(paths)
    chunks: set[bytes] = set()
    for path in paths:
        chunks |= _graph_chunks(path)
    return CommitGraph(
        exists=True,
        chain_length=chain_length,
        bloom_filters={b"BIDX", b"BDAT"} <= chunks,
        generation_data=b"GDA2" in chunks,
        generation_data_overflow=b"GDO2" in chunks,
    )


def alternates(repo_path: str) -> Alternates:
    """The object directories objects/info/alternates names (comments and blanks skipped)."""
    path = os.path.join(repo_path, "objects", "info", "alternates")
    try:
        with open(path, "rb") as file:
            data = file.read()
            modified_at = os.fstat(file.fileno()).st_mtime
    except FileNotFoundError:
        return Alternates()
    lines = [line.decode("utf-8", "surrogateescape") for line in data.splitlines()]
    directories = tuple(line for line in lines if line and not line.startswith("#"))
    return Alternates(exists=True, object_directories=directories, modified_at=modified_at)


def _step(what: str, read: Callable[[], _T]) -> _T:
    try:
        return read()
    except UsageError as exc:
        raise UsageError(f"{what}: {exc}") from exc


def _graph_chunks(path: str) -> set[bytes]:
    """The chunk ids in one commit-graph file's table of contents."""
    try:
        with open(path, "rb") as file:
            header = file.read(_GRAPH_HEADER_BYTES)
            if len(header) < _GRAPH_HEADER_BYTES or header[:4] != b"CGPH":
                raise UsageError(f"commit graph file {path!r} has no valid header")
            if header[4] != 1:
                raise UsageError(f"commit graph file {path!r} has unsupported version {header[4]}")
            # The table has one entry per chunk plus a terminating one.
            table = file.read((header[6] + 1) * _GRAPH_CHUNK_ENTRY_BYTES)
    except FileNotFoundError:
        return set()  # replaced by a concurrent write
    step = _GRAPH_CHUNK_ENTRY_BYTES
    return {table[i : i + 4] for i in range(0, len(table) - step + 1, step)}


def _multi_pack_index(path: str) -> MultiPackIndex:
    try:
        with open(path, "rb") as file:
            header = file.read(_MIDX_HEADER_BYTES)
    except FileNotFoundError:
        return MultiPackIndex()
    if len(header) < _MIDX_HEADER_BYTES or header[:4] != b"MIDX":
        raise UsageError("reading multi-pack-index: invalid header")
    return MultiPackIndex(exists=True, packfile_count=int.from_bytes(header[8:12], "big"))


def _pack_bitmap(pack_dir: str) -> Bitmap:
    try:
        names = os.listdir(pack_dir)
    except FileNotFoundError:
        return Bitmap()
    found = [n for n in names if n.startswith("pack-") and n.endswith(".bitmap")]
    return _bitmap(os.path.join(pack_dir, found[0])) if found else Bitmap()


def _midx_bitmap(pack_dir: str) -> Bitmap:
    try:
        names = os.listdir(pack_dir)
    except FileNotFoundError:
        return Bitmap()
    found = [n for n in names if n.startswith("multi-pack-index-") and n.endswith(".bitmap")]
    return _bitmap(os.path.join(pack_dir, found[0])) if found else Bitmap()


def _bitmap(path: str) -> Bitmap:
    try:
        with open(path, "rb") as file:
            header = file.read(_BITMAP_HEADER_BYTES)
    except FileNotFoundError:
        return Bitmap()  # replaced by a concurrent repack
    if len(header) < _BITMAP_HEADER_BYTES or header[:4] != b"BITM":
        raise UsageError(f"reading bitmap info: invalid header in {path!r}")
    flags = int.from_bytes(header[6:8], "big")
    return Bitmap(
        exists=True,
        hash_cache=bool(flags & _BITMAP_HASH_CACHE_FLAG),
        lookup_table=bool(flags & _BITMAP_LOOKUP_TABLE_FLAG),
    )


def _reftable_tables(repo_path: str) -> int:
    with open(os.path.join(repo_path, "reftable", "tables.list"), "rb") as tables:
        return sum(1 for line in tables.read().splitlines() if line)

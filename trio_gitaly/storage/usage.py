"""What a repository occupies on disk: Gitaly's directory size and repository statistics.

Everything here reads the filesystem only (no git) and blocks: run it in a worker thread.
The definitions are Gitaly's (internal/gitaly/service/repository/size.go and
internal/git/stats/repository_info.go), so that RepositorySize and RepositoryInfo answer
the same numbers, and fail on the same broken files, as upstream does.

Sizes are apparent sizes (`lstat().st_size`), not allocated blocks: `du --apparent-size
--bytes`, not `du`. A file that vanishes while it is walked is skipped, since git prunes
and repacks concurrently; any other filesystem error fails the whole computation.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, ParamSpec, TypeVar

from trio_gitaly.goformat import go_quote
from trio_gitaly.storage.usage_formats import (
    UsageError,
    check_alternates,
    check_bitmap,
    check_commit_graphs,
    check_midx,
    os_error,
    readdir_error,
    scan_lines,
)

#: Loose objects older than this are "stale" (Gitaly's StaleObjectsGracePeriod).
STALE_OBJECTS_GRACE_PERIOD_NS: Final = 10 * 24 * 3600 * 10**9
FILES_BACKEND: Final = "files"
REFTABLE_BACKEND: Final = "reftable"

_HEX_DIGITS: Final = frozenset(b"0123456789abcdef")
# Gitaly's detection: the first `refstorage = <value>` line of the config file, whatever
# its section; the value is the rest of the line, taken verbatim.
_REFSTORAGE_RE: Final = re.compile(rb"[ \t]*(?i:refstorage)[ \t]*=[ \t]*(.*)")
_REFTABLE_NAME_RE: Final = re.compile(r"0x([0-9A-Fa-f]{12})-0x([0-9A-Fa-f]{12})-[0-9a-zA-Z]{8}.ref")


@dataclass
class LooseObjects:
    """Loose objects in objects/XX shards (names of hex digits only; the rest is garbage)."""

    count: int = 0
    size: int = 0
    stale_count: int = 0
    stale_size: int = 0
    garbage_count: int = 0
    garbage_size: int = 0


@dataclass
class Packfiles:
    """objects/pack: every pack, and those with a .keep or (cruft) .mtimes companion."""

    count: int = 0
    size: int = 0
    reverse_index_count: int = 0
    cruft_count: int = 0
    cruft_size: int = 0
    keep_count: int = 0
    keep_size: int = 0
    garbage_count: int = 0
    garbage_size: int = 0


@dataclass
class References:
    """Loose refs under refs/ and the packed-refs size (files), or reftable's tables."""

    backend: str = FILES_BACKEND
    loose_count: int = 0
    packed_size: int = 0
    reftable_unrecognized_count: int = 0


@dataclass
class RepositoryStats:
    """Gitaly's stats.RepositoryInfo, the parts RepositoryInfo reports."""

    loose_objects: LooseObjects
    packfiles: Packfiles
    references: References


def directory_size(path: str, *, checkpoint: Callable[[], None] = lambda: None) -> int:
    """Bytes of every non-directory entry under `path`, symlinks not followed.

    `checkpoint` is called once per directory: a caller in a worker thread passes
    `trio.from_thread.check_cancelled`, so a cancelled RPC stops the walk instead of
    leaving it running.

    Raises:
        UsageError: "walking directory: ..." for an unreadable directory or entry.
    """
    total = 0
    try:
        for entry, is_dir in _walk_entries(path, checkpoint):
            if not is_dir:
                total += _lstat_size(entry) or 0
    except UsageError as exc:
        raise UsageError(f"walking directory: {exc}") from exc
    return total


def repository_stats(repo_path: str, *, now_ns: int | None = None) -> RepositoryStats:
    """Loose objects, packfiles and references of the repository at `repo_path`.

    Also reads the headers of bitmaps, multi-pack-indexes and commit-graphs and the
    alternates file, which report nothing here but make Gitaly fail when broken.

    Raises:
        UsageError: with Gitaly's message (the part after "deriving repository info: ").
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    loose = _stage("counting loose objects", loose_objects, repo_path, now_ns)
    packs = _stage("counting packfiles", packfiles, repo_path)
    refs = _stage("checking references", references, repo_path)
    _stage("checking commit-graph info", check_commit_graphs, repo_path)
    _stage("reading alterantes", check_alternates, repo_path)  # sic: Gitaly's spelling
    return RepositoryStats(loose, packs, refs)


def loose_objects(repo_path: str, now_ns: int) -> LooseObjects:
    """Count loose objects; those modified before the grace period are stale."""
    cutoff = now_ns - STALE_OBJECTS_GRACE_PERIOD_NS
    info = LooseObjects()
    for shard in range(256):
        shard_path = os.path.join(repo_path, "objects", f"{shard:02x}")
        try:
            names = sorted(os.listdir(os.fsencode(shard_path)))
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UsageError(f"reading loose object shard: {readdir_error(exc)}") from exc
        for name in names:
            try:
                st = os.lstat(os.path.join(os.fsencode(shard_path), name))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise UsageError(f"reading object info: {os_error('lstat', exc)}") from exc
            if not _HEX_DIGITS.issuperset(name):
                info.garbage_count += 1
                info.garbage_size += st.st_size
                continue
            if st.st_mtime_ns < cutoff:
                info.stale_count += 1
                info.stale_size += st.st_size
            info.count += 1
            info.size += st.st_size
    return info


def packfiles(repo_path: str) -> Packfiles:
    """Classify objects/pack: packs (kept, cruft or plain), reverse indexes, garbage."""
    pack_dir = os.fsencode(os.path.join(repo_path, "objects", "pack"))
    try:
        names = sorted(os.listdir(pack_dir))
    except FileNotFoundError:
        return Packfiles()
    except OSError as exc:
        raise UsageError(readdir_error(exc)) from exc
    kept, cruft = _pack_companions(names)
    info = Packfiles()
    for name in names:
        path = os.path.join(pack_dir, name)
        if _named(name, b"pack-", b".pack"):
            size = _entry_size(path, "getting packfile size")
            info.count += 1
            info.size += size
            if name in kept:
                info.keep_count += 1
                info.keep_size += size
            elif name in cruft:
                info.cruft_count += 1
                info.cruft_size += size
        elif any(_named(name, b"pack-", ext) for ext in (b".idx", b".keep", b".mtimes")):
            continue
        elif _named(name, b"pack-", b".rev"):
            info.reverse_index_count += 1
        elif _named(name, b"pack-", b".bitmap"):
            _prefixed("reading bitmap info", check_bitmap, path)
        elif name == b"multi-pack-index":
            _prefixed("reading multi-pack-index", check_midx, path)
        elif _named(name, b"multi-pack-index-", b".bitmap"):
            _prefixed("reading multi-pack-index bitmap info", check_bitmap, path)
        else:
            try:
                size = _entry_size(path, "getting garbage size")
            except FileNotFoundError:
                continue  # a temporary file git removed meanwhile
            info.garbage_count += 1
            info.garbage_size += size
    return info


def references(repo_path: str) -> References:
    """The reference backend and what its files hold."""
    info = References(backend=reference_backend(repo_path))
    if info.backend == FILES_BACKEND:
        info.loose_count = _count_loose_refs(os.path.join(repo_path, "refs"))
        try:
            info.packed_size = os.stat(os.path.join(repo_path, "packed-refs")).st_size
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise UsageError(f"getting packed-refs size: {os_error('stat', exc)}") from exc
    else:
        _reftable_tables(os.path.join(repo_path, "reftable"), info)
    return info


def reference_backend(repo_path: str) -> str:
    """ "files" or "reftable", from the first refstorage line of the config file.

    Raises:
        UsageError: "reference backend: ..." for an unreadable config or unknown value.
    """
    try:
        with open(os.path.join(repo_path, "config"), "rb") as config:
            data = config.read()
    except IsADirectoryError as exc:
        # Go opens a directory fine; reading it fails.
        raise UsageError(f"reference backend: scan: {os_error('read', exc)}") from exc
    except OSError as exc:
        raise UsageError(f"reference backend: open: {os_error('open', exc)}") from exc
    name = b"files"
    for line in scan_lines(data, "reference backend: scan"):
        match = _REFSTORAGE_RE.match(line)
        if match:
            name = match.group(1)
            break
    if name not in (b"files", b"reftable"):
        raise UsageError(f"reference backend: unknown reference backend: {go_quote(name)}")
    return name.decode()


# -- helpers ----------------------------------------------------------------------------

_T = TypeVar("_T")
_P = ParamSpec("_P")


def _stage(what: str, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run one step, prefixing its UsageError with `what` (Gitaly's error wrapping)."""
    try:
        return function(*args, **kwargs)
    except UsageError as exc:
        raise UsageError(f"{what}: {exc}") from exc


_prefixed = _stage


def _walk_entries(
    root: str, checkpoint: Callable[[], None] = lambda: None
) -> Iterator[tuple[bytes, bool]]:
    """(path, is_directory) of every entry under `root`, root included, as WalkDir visits.

    Symlinks are not followed (a symlink is a non-directory entry); entries that vanish
    meanwhile are skipped.

    Raises:
        UsageError: with Go's message for any other error.
    """
    root_path = os.fsencode(root)
    try:
        info = os.lstat(root_path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(os_error("lstat", exc)) from exc
    if not stat.S_ISDIR(info.st_mode):
        yield root_path, False
        return
    pending = [root_path]
    while pending:
        checkpoint()
        directory = pending.pop()
        try:
            with os.scandir(directory) as scan:
                entries = [(entry.path, entry.is_dir(follow_symlinks=False)) for entry in scan]
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UsageError(readdir_error(exc)) from exc
        for path, is_dir in entries:
            yield path, is_dir
            if is_dir:
                pending.append(path)


def _lstat_size(path: bytes) -> int | None:
    """Apparent size of `path`, or None when it vanished."""
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"retrieving file info: {os_error('lstat', exc)}") from exc


def _count_loose_refs(refs_path: str) -> int:
    try:
        return sum(1 for _, is_dir in _walk_entries(refs_path) if not is_dir)
    except UsageError as exc:
        raise UsageError(f"counting loose refs: {exc}") from exc


def _named(name: bytes, prefix: bytes, suffix: bytes) -> bool:
    return name.startswith(prefix) and name.endswith(suffix)


def _pack_companions(names: list[bytes]) -> tuple[set[bytes], set[bytes]]:
    """The .pack names that have a .keep, and those that have a .mtimes (cruft) file."""
    kept: set[bytes] = set()
    cruft: set[bytes] = set()
    for name in names:
        if not name.startswith(b"pack-"):
            continue
        dot = name.rfind(b".")
        extension = name[dot:] if dot >= 0 else b""
        pack = name[: len(name) - len(extension)] + b".pack"
        if extension == b".keep":
            kept.add(pack)
        elif extension == b".mtimes":
            cruft.add(pack)
    return kept, cruft


def _entry_size(path: bytes, what: str) -> int:
    """lstat size; FileNotFoundError passes through for callers that tolerate it."""
    try:
        return os.lstat(path).st_size
    except FileNotFoundError as exc:
        if what == "getting garbage size":
            raise
        raise UsageError(f"{what}: getting file info: {os_error('lstat', exc)}") from exc
    except OSError as exc:
        raise UsageError(f"{what}: getting file info: {os_error('lstat', exc)}") from exc


def _reftable_tables(reftable_dir: str, info: References) -> None:
    tables_list = os.path.join(reftable_dir, "tables.list")
    try:
        with open(tables_list, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise UsageError(f"open tables.list: {os_error('open', exc)}") from exc
    recognized = {b"tables.list", b"tables.list.lock"}
    # Gitaly never checks this scanner's error: a too long line just ends the list.
    for name in scan_lines(data, "", strict=False):
        recognized.add(name)
        try:
            os.stat(os.path.join(os.fsencode(reftable_dir), name))
        except OSError as exc:
            raise UsageError(f"stat reftable table file: {os_error('stat', exc)}") from exc
        if len(_REFTABLE_NAME_RE.findall(name.decode("utf-8", "replace"))) != 1:
            raise UsageError(f"parse reftable name: reftable name {go_quote(name)} malformed")
    try:
        names = os.listdir(os.fsencode(reftable_dir))
    except OSError as exc:
        raise UsageError(f"read reftable dir: {readdir_error(exc)}") from exc
    info.reftable_unrecognized_count = sum(1 for name in names if name not in recognized)

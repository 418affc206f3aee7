"""Files that crashed or killed git processes leave behind, found by name and age.

Each finder knows one kind of leftover and the grace period after which nobody can still
be using it; a file younger than that may belong to a git process running right now and
is kept. Only known names are touched: an administrator's `.keep` file or a lock we do
not know stays. Everything here blocks: run it in a worker thread.

Facts: Gitaly's internal/git/housekeeping/clean_stale_data.go (the grace periods are also
in the reliability spec, §5.2).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from trio_gitaly.errors import internal

_HOUR_S: Final = 3600
_DAY_S: Final = 24 * _HOUR_S

#: Temporary objects and packs (`objects/**/tmp_*`) git failed to rename into place.
TEMPORARY_OBJECTS_GRACE_S: Final = _DAY_S
#: Empty loose refs, as a crash or reboot in mid-write leaves them.
BROKEN_REFS_GRACE_S: Final = _DAY_S
#: Empty directories under refs/, left by deleted references.
EMPTY_REF_DIRS_GRACE_S: Final = _DAY_S
#: The locks of `LOCKFILES`.
LOCKFILE_GRACE_S: Final = 15 * 60
#: `refs/**/*.lock`: a ref transaction in flight holds these.
REFERENCE_LOCK_GRACE_S: Final = _HOUR_S
#: `reftable/tables.list.lock`.
REFTABLE_LOCK_GRACE_S: Final = _HOUR_S
#: `packed-refs.lock`: packing or deleting refs holds it.
PACKED_REFS_LOCK_GRACE_S: Final = _HOUR_S
#: `packed-refs.new`, the temporary file of a packed-refs rewrite.
PACKED_REFS_NEW_GRACE_S: Final = 15 * 60
#: `pack-*.keep` written by receive-pack or fetch-pack, which a killed push leaves behind,
#: pinning its pack forever.
PACK_KEEP_GRACE_S: Final = 7 * _DAY_S

#: Locks of single files that git takes; other `*.lock` names are never touched.
LOCKFILES: Final = (
    "config.lock",
    "HEAD.lock",
    "info/attributes.lock",
    "objects/info/alternates.lock",
    "objects/info/commit-graphs/commit-graph-chain.lock",
    "objects/pack/multi-pack-index.lock",
)
# What git writes into the .keep files of packs it received; others are an admin's.
_KEEP_PREFIXES: Final = (b"receive-pack ", b"fetch-pack ")

#: Finds stale files of one kind: (repository path, now in epoch seconds) -> paths.
Finder = Callable[[str, float], list[str]]


def find_temporary_objects(repo_path: str, now: float) -> list[str]:
    """`tmp_*` files anywhere under objects/, older than a day."""
    found = []
    for path in _files_under(os.path.join(repo_path, "objects")):
        if not os.path.basename(path).startswith("tmp_"):
            continue  # checked before stat'ing: nearly all entries are objects
        age = _age(path, now)
        # Strictly older, where the other finders take "at least": Gitaly's comparisons.
        if age is not None and age > TEMPORARY_OBJECTS_GRACE_S:
            found.append(path)
    return found


def find_stale_lockfiles(repo_path: str, now: float) -> list[str]:
    """The known single-file locks (`LOCKFILES`) older than 15 minutes."""
    return _stale(repo_path, now, LOCKFILE_GRACE_S, LOCKFILES)


def find_broken_references(repo_path: str, now: float) -> list[str]:
    """Empty loose refs older than a day (git errors on them)."""
    found = []
    for path in _files_under(os.path.join(repo_path, "refs")):
        st = _lstat(path)
        if st is not None and st.st_size == 0 and now - st.st_mtime >= BROKEN_REFS_GRACE_S:
            found.append(path)
    return found


def find_stale_reference_locks(repo_path: str, now: float) -> list[str]:
    """`*.lock` files under refs/ older than an hour."""
    found = []
    for path in _files_under(os.path.join(repo_path, "refs")):
        if path.endswith(".lock"):
            age = _age(path, now)
            if age is not None and age >= REFERENCE_LOCK_GRACE_S:
                found.append(path)
    return found


def find_stale_reftable_lock(repo_path: str, now: float) -> list[str]:
    """`reftable/tables.list.lock` older than an hour."""
    return _stale(repo_path, now, REFTABLE_LOCK_GRACE_S, ("reftable/tables.list.lock",))


def find_stale_pack_keeps(repo_path: str, now: float) -> list[str]:
    """`pack-*.keep` from receive-pack or fetch-pack older than a week."""
    pack_dir = os.path.join(repo_path, "objects", "pack")
    found = []
    for name in _listdir(pack_dir):
        if not (name.startswith("pack-") and name.endswith(".keep")):
            continue
        path = os.path.join(pack_dir, name)
        age = _age(path, now)
        if age is None or age < PACK_KEEP_GRACE_S:
            continue
        try:
            with open(path, "rb") as keep:
                content = keep.read(64)
        except FileNotFoundError:
            continue
        if content.startswith(_KEEP_PREFIXES):
            found.append(path)
    return found


def find_packed_refs_lock(repo_path: str, now: float) -> list[str]:
    """`packed-refs.lock` older than an hour."""
    return _stale(repo_path, now, PACKED_REFS_LOCK_GRACE_S, ("packed-refs.lock",))


def find_packed_refs_new(repo_path: str, now: float) -> list[str]:
    """`packed-refs.new` older than 15 minutes."""
    return _stale(repo_path, now, PACKED_REFS_NEW_GRACE_S, ("packed-refs.new",))


def find_server_info(repo_path: str, now: float) -> list[str]:
    """update-server-info's files (`info/refs*`, `objects/info/packs*`), at any age.

    They only serve the dumb HTTP protocol, which this server does not speak, and go
    stale with every push.
    """
    found = []
    for directory, base in (("info", "refs"), (os.path.join("objects", "info"), "packs")):
        full = os.path.join(repo_path, directory)
        for name in _listdir(full):
            if name != base and not name.startswith(base + "_"):
                continue
            path = os.path.join(full, name)
            st = _lstat(path)
            if st is not None and stat.S_ISREG(st.st_mode):
                found.append(path)
    return found


#: Every finder, by the `filetype` label of gitaly_housekeeping_pruned_files_total.
STALE_FILE_FINDERS: Final[dict[str, Finder]] = {
    "objects": find_temporary_objects,
    "locks": find_stale_lockfiles,
    "refs": find_broken_references,
    "reflocks": find_stale_reference_locks,
    "reftablelocks": find_stale_reftable_lock,
    "packfilelocks": find_stale_pack_keeps,
    "packedrefslock": find_packed_refs_lock,
    "packedrefsnew": find_packed_refs_new,
    "serverinfo": find_server_info,
}


@dataclass
class CleanupReport:
    """What `clean_stale_files` removed, by `filetype`, and what it failed to remove."""

    removed: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, OSError]] = field(default_factory=list)


def clean_stale_files(repo_path: str, now: float) -> CleanupReport:
    """Run every finder, remove what they found, then the directory cleanups; blocking.

    A file that cannot be removed is reported, not raised: the others still go. A
    finder that cannot read the repository raises.

    Raises:
        GitalyError: INTERNAL "housekeeping failed to find <filetype>: ...".
    """
    report = CleanupReport()
    doomed: list[str] = []
    for filetype, finder in STALE_FILE_FINDERS.items():
        try:
            found = finder(repo_path, now)
        except OSError as exc:
            raise internal(
                f"housekeeping failed to find {filetype}: {exc.strerror or exc}",
                repository_path=repo_path,
            ) from exc
        report.removed[filetype] = len(found)
        doomed += found
    for path in doomed:
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.failures.append((path, exc))
    for name, cleanup in (
        ("refsemptydir", remove_empty_ref_dirs),
        ("infoattributes", remove_info_attributes),
    ):
        try:
            report.removed[name] = cleanup(repo_path, now)
        except OSError as exc:
            raise internal(
                f"housekeeping could not perform cleanup {name}: {exc.strerror or exc}",
                repository_path=repo_path,
            ) from exc
    return report


def remove_empty_ref_dirs(repo_path: str, now: float) -> int:
    """Remove empty directories under refs/ (never refs/ itself) older than a day.

    Returns how many were removed. A directory's age is taken before its children are
    removed, since removing them makes it look new.
    """
    refs = os.path.join(repo_path, "refs")
    return sum(
        _remove_empty_dirs(os.path.join(refs, name), now)
        for name in _listdir(refs)
        if os.path.isdir(os.path.join(refs, name)) and not os.path.islink(os.path.join(refs, name))
    )


def remove_info_attributes(repo_path: str, now: float) -> int:
    """Remove info/attributes, which would override the attributes of HEAD's tree."""
    try:
        os.remove(os.path.join(repo_path, "info", "attributes"))
    except FileNotFoundError:
        return 0
    return 1


def _remove_empty_dirs(directory: str, now: float) -> int:
    age = _age(directory, now)
    if age is None:
        return 0
    removed = 0
    for name in _listdir(directory):
        child = os.path.join(directory, name)
        if os.path.isdir(child) and not os.path.islink(child):
            removed += _remove_empty_dirs(child, now)
    if age < EMPTY_REF_DIRS_GRACE_S:
        return removed
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        return removed
    except OSError:
        return removed  # not empty (any more): a reference was written meanwhile
    return removed + 1


def _stale(repo_path: str, now: float, grace_s: float, names: tuple[str, ...]) -> list[str]:
    found = []
    for name in names:
        path = os.path.join(repo_path, name)
        age = _age(path, now)
        if age is not None and age >= grace_s:
            found.append(path)
    return found


def _files_under(root: str) -> list[str]:
    """Every non-directory under `root`; vanished or unreadable directories are skipped."""
    files = []
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as scan:
                entries = list(scan)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            else:
                files.append(entry.path)
    return files


def _listdir(directory: str) -> list[str]:
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _age(path: str, now: float) -> float | None:
    """Seconds since `path` was last modified; None when it does not exist."""
    st = _lstat(path)
    return None if st is None else now - st.st_mtime

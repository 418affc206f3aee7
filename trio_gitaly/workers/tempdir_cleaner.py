"""The tempdir cleaner: removes what per-RPC temporary directories left behind.

Per-RPC directories are removed when their RPC ends (storage/tempdir.py); this worker
catches the rest (a crash, a failed removal). Every `CLEAN_INTERVAL_S`, starting at
once, it lists `<storage>/+gitaly/tmp` of each unique storage path and removes the
top-level entries whose mtime is older than `MAX_AGE_S`, whole trees at a time. An
entry it cannot remove is reported and the pass goes on with the next one.

Gitaly has no metric for this; `trio_gitaly_tempdir_removed_total{storage}` is ours.
"""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import time
from typing import TYPE_CHECKING, Final

import trio
from prometheus_client import Counter

from trio_gitaly import tree_state
from trio_gitaly.storage.locator import TMP_DIR
from trio_gitaly.storage.tempdir import remove_tree

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from prometheus_client import CollectorRegistry

    from trio_gitaly.storage.locator import Storage

LOG = logging.getLogger("trio_gitaly.tempdir")

#: Pause between two passes (Gitaly: one hour).
CLEAN_INTERVAL_S: Final = 3600.0
#: Entries younger than this are left alone (Gitaly: seven days); per-RPC directories
#: live only as long as their RPC, so anything this old is an orphan.
MAX_AGE_S: Final = 7 * 24 * 3600.0


class InvalidCleanRoot(ValueError):
    """The directory to clean is not a storage's `+gitaly/tmp`: cleaning it could
    delete repositories."""


def cleaned_dirs(storages: Sequence[Storage]) -> list[tuple[str, str]]:
    """(storage name, tmp directory) per unique storage path.

    Several storages on one path share its tmp directory; the alphabetically first
    name stands for them, as in Gitaly, whatever the configuration order.
    """
    names: dict[str, str] = {}
    for storage in storages:
        known = names.get(storage.path)
        if known is None or storage.name < known:
            names[storage.path] = storage.name
    return [(name, posixpath.join(path, TMP_DIR)) for path, name in names.items()]


def clean_tmp_dir(
    tmp_dir: str,
    now: float,
    *,
    max_age_s: float = MAX_AGE_S,
    check_cancelled: Callable[[], None] = lambda: None,
) -> tuple[int, str]:
    """Remove the top-level entries of `tmp_dir` older than `max_age_s` (blocking).

    Args:
        tmp_dir: a storage's `+gitaly/tmp`; a missing one has nothing to clean.
        now: the wall-clock time (seconds since the epoch) ages are measured from.
        max_age_s: the age from which an entry is removed.
        check_cancelled: called before each entry; raises to stop the pass
            (`trio.from_thread.check_cancelled` in a worker thread).

    Returns:
        How many entries were removed, and the first error met ("" when none).

    Raises:
        InvalidCleanRoot: `tmp_dir` does not end in `+gitaly/tmp`; nothing is touched.
    """
    if not posixpath.normpath(tmp_dir).endswith("/" + TMP_DIR):
        raise InvalidCleanRoot(f"invalid tempdir clean root: {tmp_dir!r}")
    try:
        with os.scandir(tmp_dir) as listing:
            entries = list(listing)
    except FileNotFoundError:
        return 0, ""
    removed, first_error = 0, ""
    for entry in entries:
        check_cancelled()
        try:
            # lstat, as Gitaly: a symlink's own age counts, and only the link goes.
            if now - entry.stat(follow_symlinks=False).st_mtime < max_age_s:
                continue
            remove_tree(entry.path)
        except FileNotFoundError:
            # Gone meanwhile: it was to be removed anyway.
            continue
        except OSError as exc:
            first_error = first_error or f"removing {entry.path!r}: {exc.strerror or exc}"
            continue
        removed += 1
    return removed, first_error


async def run(
    storages: Sequence[Storage],
    registry: CollectorRegistry,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Clean every unique storage's tmp directory now, then every `CLEAN_INTERVAL_S`.

    Cancellation: stops at once. A pass in progress is abandoned in its thread, which
    ends after the entry it is removing.
    """
    removed_total = Counter(
        "trio_gitaly_tempdir_removed",
        "Top-level entries of +gitaly/tmp removed by the tempdir cleaner, by storage.",
        ["storage"],
        registry=registry,
    )
    targets = cleaned_dirs(storages)
    task_status.started()
    while True:
        for name, tmp_dir in targets:
            start = time.monotonic()
            try:
                removed, error = await trio.to_thread.run_sync(
                    functools.partial(
                        clean_tmp_dir,
                        tmp_dir,
                        time.time(),
                        check_cancelled=trio.from_thread.check_cancelled,
                    ),
                    abandon_on_cancel=True,
                )
            except (OSError, InvalidCleanRoot) as exc:
                removed, error = 0, str(exc)
            removed_total.labels(name).inc(removed)
            fields: dict[str, object] = {
                "time_ms": round((time.monotonic() - start) * 1000),
                "storage": name,
            }
            if error:
                fields["error"] = error
            LOG.info("finished tempdir cleaner walk", extra={"fields": fields})
        tree_state.worker_ran(next_in_s=CLEAN_INTERVAL_S)
        await trio.sleep(CLEAN_INTERVAL_S)

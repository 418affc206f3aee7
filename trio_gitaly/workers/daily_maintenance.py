"""Daily maintenance: optimise repositories in a window of local time, every day.

The worker sleeps until the next `start_hour:start_minute` (local time, as Gitaly),
then walks the chosen storages (in random order, each path once) depth-first with the
entries of every directory shuffled, optimising each repository it meets (and not
descending into it), at most one per `PACE_S`. The window is a cancel scope whose
deadline is its end: whatever runs then is cancelled, and the day's pass is over. An
optimisation that fails ends that storage's walk; the next storage still gets its turn.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import trio

from trio_gitaly import tree_state
from trio_gitaly.config_workers import DailyMaintenanceConfig
from trio_gitaly.storage.locator import INTERNAL_DIR, is_repository

LOG = logging.getLogger("trio_gitaly.maintenance")

#: At most one repository optimised per this many seconds (Gitaly's ticker).
PACE_S: Final = 1.0
#: The `source` log field of this job's optimisations.
SOURCE: Final = "maintenance.daily"

#: Optimises one repository: (storage name, relative path, absolute path).
Optimize = Callable[[str, str, str], Awaitable[object]]
#: The local wall-clock time; tests give one that follows trio's clock.
Now = Callable[[], datetime.datetime]


@dataclass(frozen=True)
class StorageRoot:
    """A storage the job may walk."""

    name: str
    path: str


def next_window(now: datetime.datetime, hour: int, minute: int) -> datetime.datetime:
    """The first `hour:minute` strictly after `now` (both local, naive)."""
    start = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if start <= now:
        start += datetime.timedelta(days=1)
    return start


def chosen_storages(
    config: DailyMaintenanceConfig, storages: Sequence[StorageRoot]
) -> list[StorageRoot]:
    """The storages of the job: those listed (all when none is), each path once."""
    names = set(config.storages)
    seen: set[str] = set()
    chosen = []
    for storage in storages:
        if (names and storage.name not in names) or storage.path in seen:
            continue
        seen.add(storage.path)
        chosen.append(storage)
    return chosen


async def run_daily_maintenance(
    config: DailyMaintenanceConfig,
    storages: Sequence[StorageRoot],
    optimize: Optimize,
    *,
    now: Now = datetime.datetime.now,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daily window forever (a worker of the tree).

    Cancellation: stops at once, in the sleep or mid-window (the optimisation in
    progress is cancelled with its git processes); nothing is left half-done that git
    does not clean up itself.
    """
    task_status.started()
    chosen = chosen_storages(config, storages)
    if not config.enabled or not chosen:
        LOG.info("maintenance: daily disabled")
        return
    max_duration = datetime.timedelta(seconds=config.duration.seconds)
    while True:
        current = now()
        start = next_window(current, config.start_hour, config.start_minute)
        LOG.info("maintenance: daily scheduled", extra={"fields": {"scheduled": start.isoformat()}})
        tree_state.worker_next((start - current).total_seconds())
        await trio.sleep((start - current).total_seconds())
        LOG.info(
            "maintenance: daily starting", extra={"fields": {"max_duration": str(max_duration)}}
        )
        began = trio.current_time()
        optimized = 0
        with trio.move_on_after(config.duration.seconds) as window:
            for storage in random.sample(chosen, len(chosen)):
                optimized += await _walk_storage(storage, optimize)
        LOG.info(
            "maintenance: daily completed",
            extra={
                "fields": {
                    "max_duration": str(max_duration),
                    "actual_duration": str(datetime.timedelta(seconds=trio.current_time() - began)),
                    "repositories_optimized": optimized,
                    "window_ran_out": window.cancelled_caught,
                }
            },
        )
        # The next window's time is reported when the loop schedules it.
        tree_state.worker_ran(next_in_s=None)


async def _walk_storage(storage: StorageRoot, optimize: Optimize) -> int:
    """Optimise the repositories of one storage in random depth-first order; return how
    many. Cancellation: the window's end; propagates."""
    optimized = 0
    pending = [""]
    last_start = -PACE_S
    while pending:
        relative = pending.pop()
        path = os.path.join(storage.path, relative) if relative else storage.path
        # One directory's entries per step, inline: a listing is cheap, and a thread hop
        # per directory would cost more than it saves.
        await trio.lowlevel.checkpoint()
        if relative and is_repository(path):
            await trio.sleep_until(last_start + PACE_S)
            last_start = trio.current_time()
            if not await _optimize_one(storage, relative, path, optimize):
                LOG.error(
                    "maintenance: unable to completely walk storage",
                    extra={"fields": {"storage": storage.name}},
                )
                return optimized
            optimized += 1
            continue
        children = _subdirectories(path)
        random.shuffle(children)
        # A stack: the last pushed is walked first; shuffled, so the order is random.
        pending.extend(
            os.path.join(relative, child) if relative else child
            for child in children
            if relative or child != INTERNAL_DIR
        )
    return optimized


async def _optimize_one(storage: StorageRoot, relative: str, path: str, optimize: Optimize) -> bool:
    start_wall = datetime.datetime.now(datetime.UTC)
    start = trio.current_time()
    fields: dict[str, object] = {
        "relative_path": relative,
        "storage": storage.name,
        "source": SOURCE,
        "start_time": start_wall.isoformat(),
    }
    try:
        await optimize(storage.name, relative, path)
    except Exception as exc:
        fields["time_ms"] = round((trio.current_time() - start) * 1000, 3)
        fields["error"] = str(exc)
        LOG.error("maintenance: repo optimization failure", extra={"fields": fields})
        return False
    fields["time_ms"] = round((trio.current_time() - start) * 1000, 3)
    LOG.info("maintenance: repo optimization succeeded", extra={"fields": fields})
    return True


def _subdirectories(path: str) -> list[str]:
    try:
        with os.scandir(path) as entries:
            return [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        # Gone or unreadable meanwhile: nothing below it to optimise.
        return []

"""The cgroups manager: the `gitaly-<pid>` parent, its `repos-N` groups, and which group
each git process goes to.

Placement is Gitaly's: the key `<storage>/<relative path>` (or, for a command without a
repository, its argv joined with "/") hashed with CRC32-IEEE picks one of `count` groups;
with `max_cgroups_per_repo` > 1 a random offset spreads one repository's processes over
that many neighbours. Processes are moved in right after they start (Gitaly on cgroup v2
clones them straight into the group, which Python's process spawning cannot do).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import zlib
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, final

from trio_gitaly.limits.cgroups._describe import (
    OFF,
    groups_text,
    unavailable,
    version_text,
)
from trio_gitaly.limits.cgroups._hierarchy import (
    Hierarchy,
    Limits,
    ParentStats,
    Unavailable,
    UnknownVersion,
    detect,
    root_group,
)
from trio_gitaly.limits.cgroups._metrics import GroupCollector

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from prometheus_client import CollectorRegistry

    from trio_gitaly.config_limits import CgroupsConfig

LOG = logging.getLogger("trio_gitaly.cgroups")

# Gitaly's own warnings, word for word: operators and their alerts know them.
_V2_WARNING: Final = (
    "Gitaly now includes experimental support for CgroupV2. Please proceed with caution "
    "and use this experimental feature at your own risk"
)
_UNKNOWN_VERSION_WARNING: Final = (
    "Gitaly has encountered an issue while trying to detect the version of the system's "
    "cgroup. As a result, all subsequent commands will be executed without cgroup support. "
    "Please check the system's cgroup configuration and try again"
)
_CLOSED: Final = "the cgroups manager has shut down"
_MS_PER_S: Final = 1000


@final
class CgroupManager:
    """Places git processes in cgroups; made by `cgroup_manager`.

    Attributes:
        ready: groups exist and `place` moves processes into them.
        reason: why not ready ("" when ready).
        version: 1 or 2 when ready, else None.
        parent: the parent group, relative to the hierarchy's root
            ("gitaly/gitaly-<pid>"); "" when none was set up.
    """

    def __init__(
        self,
        config: CgroupsConfig,
        storages: Sequence[tuple[str, str]],
        hierarchy: Hierarchy | None,
        reason: str,
        parent: str = "",
    ) -> None:
        self._config = config
        self._hierarchy = hierarchy
        self.ready = hierarchy is not None
        self.reason = reason
        self.version = hierarchy.version if hierarchy is not None else None
        self.parent = parent
        self._count = config.repositories.count
        self._per_repo = config.cgroups_per_repo
        self._repo_limits = Limits.repository(config)
        # Longest root first, so that a storage nested in another one wins.
        self._storages = sorted(
            ((name, _as_prefix(path)) for name, path in storages),
            key=lambda storage: len(storage[1]),
            reverse=True,
        )
        # `place` runs on the Trio thread, metrics scrapes may not: creation is guarded.
        self._lock = threading.Lock()
        self._created: set[str] = set()
        self._failed: set[str] = set()

    def place(self, pid: int, *, repo_path: str | None, argv: Sequence[str]) -> str | None:
        """Move the just-started process `pid` into its repository group.

        Args:
            pid: the process.
            repo_path: the repository it works on; its key is `<storage>/<relative path>`
                when it lies under a storage. None, or a path outside every storage,
                keys the process by `argv`.
            argv: the process's full command line.

        Returns:
            The group ("gitaly/gitaly-<pid>/repos-3"), or None when nothing was moved: not
            ready, the group could not be created, or the process is already gone.
            Failures are logged, never raised.
        """
        hierarchy = self._hierarchy
        if hierarchy is None:
            return None
        group = self._group_for(repo_path, argv)
        if group not in self._created and not self._create(hierarchy, group):
            return None
        try:
            hierarchy.add(pid, group)
        except ProcessLookupError:
            # It finished before we got to it: there is nothing left to limit.
            return None
        except OSError as exc:
            LOG.warning(
                "failed adding process to cgroup",
                extra={"fields": {"pid": pid, "cgroup_path": group, "error": _os_error(exc)}},
            )
            return None
        return group

    def stats(self) -> ParentStats | None:
        """The parent group's accounting; None when not ready or unreadable (logged)."""
        hierarchy = self._hierarchy
        if hierarchy is None:
            return None
        try:
            return hierarchy.stats(self.parent)
        except (OSError, ValueError) as exc:
            LOG.warning(
                "failed to fetch cgroup stats",
                extra={"fields": {"cgroup_path": self.parent, "error": str(exc)}},
            )
            return None

    def describe(self) -> str:
        """One line for `trio-gitaly check` and logs: what is in place, or why nothing is."""
        if self._hierarchy is not None:
            return (
                f"{version_text(self._hierarchy.version)} at {self._hierarchy.mountpoint}, "
                f"{groups_text(self._config, self.parent)}"
            )
        if not self._config.enabled:
            return OFF
        return unavailable(self.reason)

    def created_groups(self) -> list[str]:
        """The `repos-N` groups made so far, in index order."""
        with self._lock:
            groups = list(self._created)
        return sorted(groups, key=lambda group: int(group.rsplit("-", 1)[1]))

    def _group_for(self, repo_path: str | None, argv: Sequence[str]) -> str:
        key = self._key(repo_path, argv)
        index = zlib.crc32(os.fsencode(key)) % self._count
        if self._per_repo > 1:
            index = (index + random.randrange(self._per_repo)) % self._count
        return f"{self.parent}/repos-{index}"

    def _key(self, repo_path: str | None, argv: Sequence[str]) -> str:
        if repo_path is not None:
            path = os.path.normpath(repo_path)
            for name, prefix in self._storages:
                if path.startswith(prefix):
                    return f"{name}/{path[len(prefix) :]}"
        return "/".join(argv)

    def _create(self, hierarchy: Hierarchy, group: str) -> bool:
        # Like Gitaly's per-group sync.Once: one attempt, its outcome remembered.
        with self._lock:
            if group in self._created:
                return True
            if group in self._failed:
                return False
            try:
                hierarchy.create(group, self._repo_limits)
            except OSError as exc:
                self._failed.add(group)
                LOG.error(
                    "failed creating repository cgroup",
                    extra={"fields": {"cgroup_path": group, "error": _os_error(exc)}},
                )
                return False
            self._created.add(group)
            return True

    def _close(self) -> None:
        hierarchy = self._hierarchy
        if hierarchy is None:
            return
        with self._lock:
            self._hierarchy = None
            self.ready = False
            self.reason = _CLOSED
        hierarchy.remove(self.parent, evict=True)


@contextmanager
def cgroup_manager(
    config: CgroupsConfig,
    storages: Sequence[tuple[str, str]],
    registry: CollectorRegistry,
) -> Iterator[CgroupManager]:
    """Set up this process's cgroups; remove them on exit.

    Args:
        config: `[cgroups]`.
        storages: (name, absolute path) of every storage, to key repositories.
        registry: where the per-group metrics go (only with `metrics_enabled`).

    Yields:
        A ready manager, or one that does nothing (`ready` False, `reason` set) when
        cgroups are off or cannot be used here; the latter is logged as a warning. Nothing
        is raised for it: the server runs without cgroups, as Gitaly's no-op manager does.

    Resource handling:
        Creates `<hierarchy_root>/gitaly-<pid>` with the parent limits and `repos-0`;
        other `repos-N` appear on first use. On exit the whole `gitaly-<pid>` tree is
        removed, processes still inside being moved to the hierarchy's root first;
        failures are logged. Blocking, but only a few cgroupfs operations.
    """
    started = time.monotonic()
    manager = _set_up(config, storages)
    LOG.info(
        "finished initializing cgroups",
        extra={"fields": {"duration_ms": round((time.monotonic() - started) * _MS_PER_S)}},
    )
    collector = None
    if manager._hierarchy is not None and config.metrics_enabled:
        collector = GroupCollector(manager._hierarchy, manager.created_groups)
        registry.register(collector)
    try:
        yield manager
    finally:
        if collector is not None:
            registry.unregister(collector)
        manager._close()


def _set_up(config: CgroupsConfig, storages: Sequence[tuple[str, str]]) -> CgroupManager:
    if not config.enabled:
        return CgroupManager(config, storages, None, OFF)
    try:
        hierarchy = detect(config)
    except UnknownVersion as exc:
        LOG.warning(_UNKNOWN_VERSION_WARNING, extra={"fields": {"error": str(exc)}})
        return CgroupManager(config, storages, None, str(exc))
    except Unavailable as exc:
        return _unavailable(config, storages, str(exc))
    if hierarchy.version == 2:
        LOG.warning(_V2_WARNING)
    parent = f"{root_group(config)}/gitaly-{os.getpid()}"
    first_group = f"{parent}/repos-0"
    try:
        hierarchy.check(config)
        hierarchy.create(parent, Limits.parent(config))
        hierarchy.create(first_group, Limits.repository(config))
    except Unavailable as exc:
        return _unavailable(config, storages, str(exc))
    except OSError as exc:
        hierarchy.remove(parent, evict=False)
        return _unavailable(config, storages, f"creating cgroup {parent}: {_os_error(exc)}")
    manager = CgroupManager(config, storages, hierarchy, "", parent)
    manager._created.add(first_group)
    return manager


def _unavailable(
    config: CgroupsConfig, storages: Sequence[tuple[str, str]], reason: str
) -> CgroupManager:
    LOG.warning("failed setting up cgroups", extra={"fields": {"error": reason}})
    return CgroupManager(config, storages, None, reason)


def _os_error(exc: OSError) -> str:
    if exc.filename is None or exc.strerror is None:
        return str(exc)
    return f"{exc.filename}: {exc.strerror}"


def _as_prefix(path: str) -> str:
    path = os.path.normpath(path)
    return path if path.endswith("/") else path + "/"

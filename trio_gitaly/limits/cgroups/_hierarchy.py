"""The two cgroup layouts: v1 (one hierarchy per controller) and v2 (one unified tree).

A group is named by its path relative to the hierarchy's root ("gitaly/gitaly-42/repos-3"),
as Gitaly logs it and as /proc/<pid>/cgroup shows it. `detect` picks the layout for a
config and checks, without creating anything, that the groups it asks for can be made.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from trio_gitaly.limits.cgroups._files import (
    PROCS_FILE,
    procs,
    read_int,
    read_keyed,
    read_text,
    remove_tree,
    write_value,
)
from trio_gitaly.mounts import MOUNTINFO, mount_table

if TYPE_CHECKING:
    from trio_gitaly.config_limits import CgroupsConfig

# Gitaly fixes the CFS enforcement period at 100 ms; quotas are per period.
CFS_PERIOD_US: Final = 100_000
V1_CONTROLLERS: Final = ("memory", "cpu")
# With no limit set, v1 reports the largest page-aligned signed 64-bit value; nobody
# configures a limit anywhere near this.
_V1_NO_LIMIT_BYTES: Final = 2**62
_NS_PER_S: Final = 1e9
_US_PER_S: Final = 1e6
# Enabled on v2 whenever offered, so that stats and metrics have numbers to read even
# when no limit needs them.
_ACCOUNTING_CONTROLLERS: Final = frozenset({"cpu", "memory"})
# cpu.shares range (v1) mapped onto cpu.weight's 1..10000 (v2), as runc and containerd do.
_MIN_SHARES: Final = 2
_MAX_SHARES: Final = 262_144
_MAX_WEIGHT: Final = 10_000


class Unavailable(Exception):
    """cgroups cannot be used as configured; the message says why."""


class UnknownVersion(Unavailable):
    """The mountpoint holds neither a cgroup v1 nor a cgroup v2 hierarchy."""


@dataclass(frozen=True)
class Limits:
    """The limits of one group; 0 leaves a limit unset."""

    memory_bytes: int = 0
    cpu_shares: int = 0
    cpu_quota_us: int = 0

    @classmethod
    def parent(cls, cfg: CgroupsConfig) -> Limits:
        """The `gitaly-<pid>` group's limits."""
        return cls(cfg.memory_bytes, cfg.cpu_shares, cfg.cpu_quota_us)

    @classmethod
    def repository(cls, cfg: CgroupsConfig) -> Limits:
        """Each `repos-N` group's limits."""
        repos = cfg.repositories
        return cls(repos.memory_bytes, repos.cpu_shares, repos.cpu_quota_us)


@dataclass(frozen=True)
class ParentStats:
    """The parent group's accounting: what Gitaly's CgroupCpu and CgroupMemory watchers read.

    Attributes:
        cpu_throttled_count: CFS periods in which the group was throttled (`nr_throttled`).
        cpu_throttled_duration_s: total time the group spent throttled.
        memory_usage_bytes: memory charged to the group and its descendants.
        memory_limit_bytes: the group's memory limit; 0 when none is set.
        total_inactive_file_bytes: page cache on the inactive list (reclaimed first).
        under_oom: the group is out of memory right now (v1 only; always False on v2).
    """

    cpu_throttled_count: int
    cpu_throttled_duration_s: float
    memory_usage_bytes: int
    memory_limit_bytes: int
    total_inactive_file_bytes: int
    under_oom: bool


@dataclass(frozen=True)
class GroupSample:
    """What the metrics report for one `repos-N` group; None where the kernel has nothing."""

    cpu_user: int | None
    cpu_kernel: int | None
    cfs_periods: int
    cfs_throttled_periods: int
    cfs_throttled_s: float
    procs: dict[str, int]
    memory_reclaim_attempts: int | None


class Hierarchy(ABC):
    """Where groups live and how limits, processes and statistics are written and read."""

    version: ClassVar[int]

    def __init__(self, mountpoint: str) -> None:
        self.mountpoint = mountpoint

    @abstractmethod
    def dirs(self, group: str) -> tuple[str, ...]:
        """The directories that make up `group`; "" is the root of the hierarchy."""

    @abstractmethod
    def create(self, group: str, limits: Limits) -> None:
        """Create `group` (and missing ancestors) if needed and set its limits.

        Raises:
            OSError: from cgroupfs.
        """

    @abstractmethod
    def stats(self, group: str) -> ParentStats:
        """The accounting of `group` and its descendants.

        Raises:
            OSError, ValueError: a control file is missing or unreadable.
        """

    @abstractmethod
    def sample(self, group: str) -> GroupSample:
        """The metrics of `group`.

        Raises:
            OSError, ValueError: a control file is missing or unreadable.
        """

    def add(self, pid: int, group: str) -> None:
        """Move process `pid` into `group`.

        Raises:
            ProcessLookupError: the process is gone.
            OSError: from cgroupfs.
        """
        for directory in self.dirs(group):
            write_value(os.path.join(directory, PROCS_FILE), str(pid))

    def remove(self, group: str, *, evict: bool) -> bool:
        """Remove `group` and its descendants; see `remove_tree`.

        Args:
            group: the group.
            evict: move processes still inside to the root of the hierarchy first.
        """
        results = [
            remove_tree(directory, top if evict else None)
            for directory, top in zip(self.dirs(group), self.dirs(""), strict=True)
        ]
        return all(results)

    def check(self, cfg: CgroupsConfig) -> None:
        """Raise Unavailable unless the groups `cfg` asks for could be made; creates nothing."""
        for directory in self.dirs(root_group(cfg)):
            existing = directory
            while not os.path.exists(existing):
                existing = os.path.dirname(existing)
            if not os.path.isdir(existing):
                raise Unavailable(f"{existing} is not a directory")
            if not os.access(existing, os.W_OK | os.X_OK):
                raise Unavailable(f"{existing} is not writable")


class V1Hierarchy(Hierarchy):
    """Legacy or hybrid mode: `<mountpoint>/memory/<group>` and `<mountpoint>/cpu/<group>`."""

    version = 1

    def dirs(self, group: str) -> tuple[str, ...]:
        """The memory and the cpu directory of `group`."""
        return tuple(_join(self.mountpoint, name, group) for name in V1_CONTROLLERS)

    def create(self, group: str, limits: Limits) -> None:
        """Create `group` in both hierarchies and set its limits."""
        memory_dir, cpu_dir = self.dirs(group)
        os.makedirs(memory_dir, exist_ok=True)
        os.makedirs(cpu_dir, exist_ok=True)
        if limits.memory_bytes:
            write_value(f"{memory_dir}/memory.limit_in_bytes", str(limits.memory_bytes))
        if limits.cpu_shares:
            write_value(f"{cpu_dir}/cpu.shares", str(limits.cpu_shares))
        if limits.cpu_quota_us:
            write_value(f"{cpu_dir}/cpu.cfs_period_us", str(CFS_PERIOD_US))
            write_value(f"{cpu_dir}/cpu.cfs_quota_us", str(limits.cpu_quota_us))

    def stats(self, group: str) -> ParentStats:
        """From cpu.stat, memory.{usage,limit}_in_bytes, memory.stat and memory.oom_control."""
        memory_dir, cpu_dir = self.dirs(group)
        cpu = read_keyed(f"{cpu_dir}/cpu.stat")
        limit = read_int(f"{memory_dir}/memory.limit_in_bytes")
        return ParentStats(
            cpu_throttled_count=cpu.get("nr_throttled", 0),
            cpu_throttled_duration_s=cpu.get("throttled_time", 0) / _NS_PER_S,
            memory_usage_bytes=read_int(f"{memory_dir}/memory.usage_in_bytes"),
            memory_limit_bytes=0 if limit >= _V1_NO_LIMIT_BYTES else limit,
            total_inactive_file_bytes=read_keyed(f"{memory_dir}/memory.stat").get(
                "total_inactive_file", 0
            ),
            under_oom=read_keyed(f"{memory_dir}/memory.oom_control").get("under_oom", 0) != 0,
        )

    def sample(self, group: str) -> GroupSample:
        """CPU usage in nanoseconds, only where cpuacct shares the cpu hierarchy."""
        memory_dir, cpu_dir = self.dirs(group)
        cpu = read_keyed(f"{cpu_dir}/cpu.stat")
        try:
            user: int | None = read_int(f"{cpu_dir}/cpuacct.usage_user")
            kernel: int | None = read_int(f"{cpu_dir}/cpuacct.usage_sys")
        except FileNotFoundError:
            user = kernel = None
        return GroupSample(
            cpu_user=user,
            cpu_kernel=kernel,
            cfs_periods=cpu.get("nr_periods", 0),
            cfs_throttled_periods=cpu.get("nr_throttled", 0),
            cfs_throttled_s=cpu.get("throttled_time", 0) / _NS_PER_S,
            procs={"memory": len(procs(memory_dir)), "cpu": len(procs(cpu_dir))},
            memory_reclaim_attempts=read_int(f"{memory_dir}/memory.failcnt"),
        )


class V2Hierarchy(Hierarchy):
    """Unified mode: `<mountpoint>/<group>`, controllers enabled down the path."""

    version = 2

    def __init__(self, mountpoint: str, offered: frozenset[str]) -> None:
        super().__init__(mountpoint)
        self.offered = offered
        self.controllers = offered & _ACCOUNTING_CONTROLLERS

    def check(self, cfg: CgroupsConfig) -> None:
        """Also: every configured limit has its controller."""
        needs = (("memory_bytes", "memory"), ("cpu_shares", "cpu"), ("cpu_quota_us", "cpu"))
        for section, prefix in ((cfg, "cgroups"), (cfg.repositories, "cgroups.repositories")):
            for key, controller in needs:
                if getattr(section, key) > 0 and controller not in self.offered:
                    offered = " ".join(sorted(self.offered)) or "none"
                    raise Unavailable(
                        f"{prefix}.{key} needs the {controller} controller, which "
                        f"{self.mountpoint} does not offer (cgroup.controllers: {offered})"
                    )
        super().check(cfg)

    def dirs(self, group: str) -> tuple[str, ...]:
        """The one directory of `group`."""
        return (_join(self.mountpoint, group),)

    def create(self, group: str, limits: Limits) -> None:
        """Create `group`, enabling `controllers` in every ancestor, and set its limits."""
        directory = self.mountpoint
        for part in group.split("/"):
            self._enable_controllers(directory)
            directory = os.path.join(directory, part)
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory)
        if limits.memory_bytes:
            write_value(f"{directory}/memory.max", str(limits.memory_bytes))
        if limits.cpu_shares:
            write_value(f"{directory}/cpu.weight", str(_shares_to_weight(limits.cpu_shares)))
        if limits.cpu_quota_us:
            write_value(f"{directory}/cpu.max", f"{limits.cpu_quota_us} {CFS_PERIOD_US}")

    def _enable_controllers(self, directory: str) -> None:
        subtree_control = f"{directory}/cgroup.subtree_control"
        missing = self.controllers - set(read_text(subtree_control).split())
        if missing:
            write_value(subtree_control, " ".join(f"+{name}" for name in sorted(missing)))

    def stats(self, group: str) -> ParentStats:
        """From cpu.stat, memory.{current,max,stat}; memory reads 0 without its controller."""
        (directory,) = self.dirs(group)
        cpu = read_keyed(f"{directory}/cpu.stat")
        try:
            usage = read_int(f"{directory}/memory.current")
            limit_text = read_text(f"{directory}/memory.max")
            inactive_file = read_keyed(f"{directory}/memory.stat").get("inactive_file", 0)
        except FileNotFoundError:
            usage, limit_text, inactive_file = 0, "max", 0
        return ParentStats(
            cpu_throttled_count=cpu.get("nr_throttled", 0),
            cpu_throttled_duration_s=cpu.get("throttled_usec", 0) / _US_PER_S,
            memory_usage_bytes=usage,
            memory_limit_bytes=0 if limit_text == "max" else int(limit_text),
            total_inactive_file_bytes=inactive_file,
            under_oom=False,
        )

    def sample(self, group: str) -> GroupSample:
        """CPU usage in microseconds; procs once per controller enabled in the group."""
        (directory,) = self.dirs(group)
        cpu = read_keyed(f"{directory}/cpu.stat")
        count = len(procs(directory))
        return GroupSample(
            cpu_user=cpu.get("user_usec"),
            cpu_kernel=cpu.get("system_usec"),
            cfs_periods=cpu.get("nr_periods", 0),
            cfs_throttled_periods=cpu.get("nr_throttled", 0),
            cfs_throttled_s=cpu.get("throttled_usec", 0) / _US_PER_S,
            procs=dict.fromkeys(read_text(f"{directory}/cgroup.controllers").split(), count),
            memory_reclaim_attempts=None,
        )


def detect(cfg: CgroupsConfig) -> Hierarchy:
    """The hierarchy at `cfg.mountpoint`; creates nothing.

    v2 when the mountpoint itself is a cgroup2 mount, v1 when it holds cgroup v1 memory and
    cpu hierarchies.

    Raises:
        UnknownVersion: neither.
        Unavailable: a cgroup2 mount whose controllers cannot be read.
    """
    mountpoint = os.path.normpath(cfg.mountpoint)
    if not os.path.isdir(mountpoint):
        raise UnknownVersion(f"{mountpoint} does not exist or is not a directory")
    try:
        table = mount_table()
    except OSError as exc:
        raise UnknownVersion(f"cannot read {MOUNTINFO}: {exc.strerror}") from exc
    top = table.get(os.path.realpath(mountpoint))
    if top is not None and top.fstype == "cgroup2":
        try:
            offered = frozenset(read_text(f"{mountpoint}/cgroup.controllers").split())
        except OSError as exc:
            raise Unavailable(f"cannot read {mountpoint}/cgroup.controllers: {exc}") from exc
        return V2Hierarchy(mountpoint, offered)
    for name in V1_CONTROLLERS:
        mount = table.get(os.path.realpath(os.path.join(mountpoint, name)))
        if mount is None or mount.fstype != "cgroup" or name not in mount.super_options:
            raise UnknownVersion(
                f"{mountpoint} is neither a cgroup2 mount nor holds a cgroup v1 "
                f"{name} hierarchy at {mountpoint}/{name}"
            )
    return V1Hierarchy(mountpoint)


def _shares_to_weight(shares: int) -> int:
    shares = min(max(shares, _MIN_SHARES), _MAX_SHARES)
    return 1 + (shares - _MIN_SHARES) * (_MAX_WEIGHT - 1) // (_MAX_SHARES - _MIN_SHARES)


def root_group(cfg: CgroupsConfig) -> str:
    """`hierarchy_root` as a group name: relative, whatever slashes the config has."""
    return cfg.hierarchy_root.strip("/")


def _join(top: str, *parts: str) -> str:
    return os.path.join(top, *(part.strip("/") for part in parts if part.strip("/")))

"""The cgroups manager on this machine's real cgroupfs, with real processes.

Each test works under its own `trio-gitaly-test-<random>` hierarchy root, which a fixture
removes whatever happens (moving stray processes to the hierarchy's root first). Tests
that need cgroup v1 at /sys/fs/cgroup or a cgroup2 mount at /sys/fs/cgroup/unified skip
with the reason when the machine lacks it; the rest run anywhere.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import zlib
from typing import TYPE_CHECKING, Any

import pytest
import trio
from prometheus_client import CollectorRegistry

from tests.limits.cgroup_support import (
    MOUNTPOINT,
    UNIFIED,
    cgroup_config,
    cgroups_of,
    group_for,
)
from trio_gitaly.config_limits import CgroupsConfig
from trio_gitaly.git.command import CommandFactory, GitCommand
from trio_gitaly.git.version import detect
from trio_gitaly.limits.cgroups import cgroup_manager, probe, prune_stale_groups
from trio_gitaly.limits.cgroups._hierarchy import _shares_to_weight

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    Spawn = Callable[..., subprocess.Popen[bytes]]

MiB = 2**20
PARENT_LIMITS = {"memory_bytes": 512 * MiB, "cpu_shares": 512, "cpu_quota_us": 50_000}
REPO_LIMITS = {"memory_bytes": 256 * MiB, "cpu_shares": 256, "cpu_quota_us": 20_000}
# Touches 48 MiB once told to, so that the memory is charged to the group it is in by then.
ALLOCATOR = (
    "import sys; sys.stdin.readline(); data = b'x' * (48 << 20); "
    "print('ok', flush=True); sys.stdin.readline()"
)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real processes (default: a sleep); all killed on teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*argv: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            list(argv) or ["sleep", "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def subgroups(path: str) -> set[str]:
    """The child cgroups of `path` (its other entries are control files)."""
    return {entry.name for entry in os.scandir(path) if entry.is_dir()}


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a log record (set through `extra`)."""
    value: dict[str, Any] = getattr(record, "fields", {})
    return value


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


# -- v1 ---------------------------------------------------------------------------------------


def test_v1_creates_parent_and_first_group_with_limits(v1_root: str, tmp_path: Path) -> None:
    cfg = cgroup_config(
        v1_root, **PARENT_LIMITS, **{f"repo_{k}": v for k, v in REPO_LIMITS.items()}
    )
    with cgroup_manager(cfg, [("default", str(tmp_path))], CollectorRegistry()) as manager:
        assert (manager.ready, manager.reason, manager.version) == (True, "", 1)
        assert manager.parent == f"{v1_root}/gitaly-{os.getpid()}"
        for group, limits in (
            (manager.parent, PARENT_LIMITS),
            (f"{manager.parent}/repos-0", REPO_LIMITS),
        ):
            memory, cpu = f"{MOUNTPOINT}/memory/{group}", f"{MOUNTPOINT}/cpu/{group}"
            assert int(read(f"{memory}/memory.limit_in_bytes")) == limits["memory_bytes"]
            assert int(read(f"{cpu}/cpu.shares")) == limits["cpu_shares"]
            assert int(read(f"{cpu}/cpu.cfs_quota_us")) == limits["cpu_quota_us"]
            assert int(read(f"{cpu}/cpu.cfs_period_us")) == 100_000
        # The others come on first use.
        assert not os.path.exists(f"{MOUNTPOINT}/memory/{manager.parent}/repos-1")
        assert manager.describe().startswith(
            f"v1 at {MOUNTPOINT}, {manager.parent} (memory 512 MiB"
        )
        assert "4 repository groups (each: memory 256 MiB" in manager.describe()
    for controller in ("memory", "cpu"):
        assert subgroups(f"{MOUNTPOINT}/{controller}/{v1_root}") == set()
    assert not manager.ready
    assert manager.place(os.getpid(), repo_path=None, argv=["x"]) is None


def test_v1_place_by_repository_then_by_argv(v1_root: str, tmp_path: Path, spawn: Spawn) -> None:
    storage, nested = tmp_path / "storage", tmp_path / "storage" / "nested"
    storages = [("default", str(storage)), ("inner", str(nested))]
    cfg = cgroup_config(v1_root, repo_memory_bytes=64 * MiB)
    cases = [
        (str(storage / "group" / "project.git"), "default/group/project.git"),
        (str(nested / "a.git") + "/", "inner/a.git"),
        (str(tmp_path / "elsewhere.git"), None),
        (None, None),
    ]
    with cgroup_manager(cfg, storages, CollectorRegistry()) as manager:
        for repo_path, key in cases:
            process = spawn()
            argv = ["/usr/bin/git", "--git-dir", str(repo_path), "log"]
            placed = manager.place(process.pid, repo_path=repo_path, argv=argv)
            expected = f"{manager.parent}/{group_for(key or '/'.join(argv))}"
            assert placed == expected, (repo_path, key)
            where = cgroups_of(process.pid)
            assert (where["memory"], where["cpu"]) == (f"/{expected}", f"/{expected}")
            limit = read(f"{MOUNTPOINT}/memory/{expected}/memory.limit_in_bytes")
            assert int(limit) == 64 * MiB


def test_v1_one_repository_spreads_over_cgroups_per_repo(v1_root: str, spawn: Spawn) -> None:
    cfg = cgroup_config(v1_root, repo_max_cgroups_per_repo=2)
    process = spawn()
    with cgroup_manager(cfg, [("default", "/srv")], CollectorRegistry()) as manager:
        groups = {
            manager.place(process.pid, repo_path="/srv/a.git", argv=["git"]) for _ in range(40)
        }
    first = zlib.crc32(b"default/a.git") % 4
    # Two neighbours, wrapping around; missing one of them in 40 tries is a 2**-39 chance.
    assert groups == {f"{manager.parent}/repos-{(first + i) % 4}" for i in range(2)}


def test_v1_stats_read_the_parent(v1_root: str, spawn: Spawn) -> None:
    cfg = cgroup_config(v1_root, memory_bytes=512 * MiB)
    with cgroup_manager(cfg, [], CollectorRegistry()) as manager:
        process = spawn(sys.executable, "-c", ALLOCATOR)
        assert manager.place(process.pid, repo_path=None, argv=["allocator"]) is not None
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"go\n")
        process.stdin.flush()
        assert process.stdout.readline() == b"ok\n"
        stats = manager.stats()
    assert stats is not None
    assert stats.memory_limit_bytes == 512 * MiB
    assert 48 * MiB <= stats.memory_usage_bytes < 512 * MiB
    assert 0 <= stats.total_inactive_file_bytes <= stats.memory_usage_bytes
    assert stats.under_oom is False
    assert stats.cpu_throttled_count >= 0 and stats.cpu_throttled_duration_s >= 0.0


def test_v1_stats_without_a_memory_limit(v1_root: str) -> None:
    with cgroup_manager(cgroup_config(v1_root), [], CollectorRegistry()) as manager:
        stats = manager.stats()
    assert stats is not None and stats.memory_limit_bytes == 0


def test_v1_exit_moves_stragglers_out_and_removes_everything(v1_root: str, spawn: Spawn) -> None:
    process = spawn()
    with cgroup_manager(cgroup_config(v1_root), [], CollectorRegistry()) as manager:
        assert manager.place(process.pid, repo_path=None, argv=["sleep"]) is not None
    where = cgroups_of(process.pid)
    assert (where["memory"], where["cpu"]) == ("/", "/")
    assert process.poll() is None
    for controller in ("memory", "cpu"):
        assert not os.path.exists(f"{MOUNTPOINT}/{controller}/{manager.parent}")


async def test_v1_command_factory_places_git(v1_root: str, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    cfg = cgroup_config(v1_root)
    with cgroup_manager(cfg, [("default", str(storage))], CollectorRegistry()) as manager:
        factory = CommandFactory(await detect(), placer=manager)
        repo = str(storage / "project.git")
        init = GitCommand("init", flags=["--bare", "--quiet"], args=[repo])
        await factory.run(init, repo_path=None)
        expected = f"/{manager.parent}/{group_for('default/project.git')}"
        batch = GitCommand("cat-file", flags=["--batch-check"])
        async with factory.spawn(batch, repo_path=repo, stdin=subprocess.PIPE) as git:
            assert cgroups_of(git.pid)["memory"] == expected
        started = await factory.start(batch, repo_path=repo)
        try:
            assert cgroups_of(started.pid)["cpu"] == expected
        finally:
            await started.aclose()


@pytest.mark.parametrize("enabled", [True, False], ids=["metrics", "no-metrics"])
def test_v1_metrics_only_when_enabled(v1_root: str, spawn: Spawn, enabled: bool) -> None:
    registry = CollectorRegistry()
    cfg = cgroup_config(v1_root, metrics_enabled=enabled)
    with cgroup_manager(cfg, [], registry) as manager:
        group = manager.place(spawn().pid, repo_path=None, argv=["sleep", "60"])
        assert group is not None
        names = {metric.name for metric in registry.collect()}
        procs = registry.get_sample_value(
            "gitaly_cgroup_procs_total", {"path": group, "subsystem": "memory"}
        )
        periods = registry.get_sample_value(
            "gitaly_cgroup_cpu_cfs_periods_total", {"path": f"{manager.parent}/repos-0"}
        )
        reclaim = registry.get_sample_value(
            "gitaly_cgroup_memory_reclaim_attempts_total", {"path": group}
        )
    if enabled:
        assert (procs, periods, reclaim) == (1.0, 0.0, 0.0)
        assert {
            "gitaly_cgroup_cpu_cfs_throttled_periods",
            "gitaly_cgroup_cpu_cfs_throttled_seconds",
        } <= names
    else:
        assert not any(name.startswith("gitaly_cgroup") for name in names)
    # Unregistered on exit: a scrape never reads removed groups.
    assert not any(metric.name.startswith("gitaly_cgroup") for metric in registry.collect())


async def test_prune_removes_dead_servers_groups_only(
    v1_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_gitaly.cgroups")
    # pid_max itself is never handed out: no process can have it.
    dead = f"gitaly-{int(read('/proc/sys/kernel/pid_max'))}"
    cfg = cgroup_config(v1_root)
    with cgroup_manager(cfg, [], CollectorRegistry()) as manager:
        ours = os.path.basename(manager.parent)
        for controller in ("memory", "cpu"):
            for name in (f"{dead}/repos-0", "gitaly-0", "gitaly-1", "unexpected"):
                os.makedirs(f"{MOUNTPOINT}/{controller}/{v1_root}/{name}")
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(prune_stale_groups, cfg))
        for controller in ("memory", "cpu"):
            left = subgroups(f"{MOUNTPOINT}/{controller}/{v1_root}")
            assert left == {ours, "gitaly-1", "unexpected"}
    messages = [
        (r.getMessage(), os.path.basename(fields(r)["path"]))
        for r in caplog.records
        if "path" in fields(r)
    ]
    assert messages.count(("removed leftover gitaly process directory", dead)) == 2
    assert messages.count(("removed gitaly directory with no pid", "gitaly-0")) == 2
    assert messages.count(("could not prune entry", "unexpected")) == 2


async def test_prune_does_nothing_when_off(tmp_path: Path) -> None:
    stale = tmp_path / "memory" / "gitaly" / "gitaly-0"
    stale.mkdir(parents=True)
    await prune_stale_groups(CgroupsConfig(mountpoint=str(tmp_path)))
    assert stale.is_dir()


# -- v2 ---------------------------------------------------------------------------------------


def test_v2_groups_and_placement(unified_root: str, spawn: Spawn) -> None:
    cfg = cgroup_config(unified_root, mountpoint=UNIFIED, repo_count=2)
    process = spawn()
    with cgroup_manager(cfg, [("default", "/srv")], CollectorRegistry()) as manager:
        assert (manager.ready, manager.version) == (True, 2)
        assert os.path.isdir(f"{UNIFIED}/{manager.parent}/repos-0")
        placed = manager.place(process.pid, repo_path="/srv/x.git", argv=["git"])
        assert placed == f"{manager.parent}/{group_for('default/x.git', 2)}"
        assert cgroups_of(process.pid)[""] == f"/{placed}"
        stats = manager.stats()
        assert stats is not None and stats.memory_limit_bytes >= 0
        assert "v2 (experimental)" in manager.describe()
    assert cgroups_of(process.pid)[""] == "/"
    assert subgroups(f"{UNIFIED}/{unified_root}") == set()


def test_v2_limit_without_its_controller(
    unified_root: str, caplog: pytest.LogCaptureFixture
) -> None:
    if "memory" in read(f"{UNIFIED}/cgroup.controllers").split():
        pytest.skip(f"{UNIFIED} offers the memory controller")
    cfg = cgroup_config(unified_root, mountpoint=UNIFIED, memory_bytes=512 * MiB)
    with cgroup_manager(cfg, [], CollectorRegistry()) as manager:
        assert not manager.ready and manager.version is None
        assert "cgroups.memory_bytes needs the memory controller" in manager.reason
        assert (
            manager.describe() == f"unavailable: {manager.reason}; the server runs without cgroups"
        )
        assert manager.place(os.getpid(), repo_path=None, argv=["x"]) is None
        assert manager.stats() is None
        assert not os.path.exists(f"{UNIFIED}/{unified_root}")
    assert ("failed setting up cgroups", logging.WARNING) in [
        (r.getMessage(), r.levelno) for r in caplog.records
    ]
    assert probe(cfg) == manager.describe()


# -- anywhere ---------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["missing", "plain-directory"])
def test_not_a_cgroup_mount(tmp_path: Path, caplog: pytest.LogCaptureFixture, layout: str) -> None:
    mountpoint = tmp_path / "cgroup"
    if layout == "plain-directory":
        for controller in ("memory", "cpu"):
            (mountpoint / controller).mkdir(parents=True)
    cfg = cgroup_config("gitaly", mountpoint=str(mountpoint), memory_bytes=MiB)
    with cgroup_manager(cfg, [], CollectorRegistry()) as manager:
        assert (manager.ready, manager.version) == (False, None)
        assert str(mountpoint) in manager.reason
        assert manager.place(os.getpid(), repo_path=None, argv=["x"]) is None
        assert manager.stats() is None
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "detect the version of the system's cgroup" in warning.getMessage()
    assert fields(warning) == {"error": manager.reason}
    assert not (mountpoint / "memory" / "gitaly").exists()
    assert probe(cfg).startswith(f"unavailable: {mountpoint}")


def test_off_does_nothing(caplog: pytest.LogCaptureFixture) -> None:
    cfg = CgroupsConfig(mountpoint="/nonexistent")
    with cgroup_manager(cfg, [], CollectorRegistry()) as manager:
        assert (manager.ready, manager.version) == (False, None)
        assert manager.describe() == manager.reason == "off (cgroups.repositories.count = 0)"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert probe(cfg) == "off (cgroups.repositories.count = 0)"


def test_probe_creates_nothing(v1_root: str) -> None:
    cfg = cgroup_config(v1_root, memory_bytes=2**30, repo_cpu_shares=128)
    assert probe(cfg) == (
        f"v1 at {MOUNTPOINT}: would create {v1_root}/gitaly-<pid> (memory 1 GiB) with 4 "
        "repository groups (each: cpu shares 128)"
    )
    assert not os.path.exists(f"{MOUNTPOINT}/memory/{v1_root}")


@pytest.mark.parametrize(
    ("shares", "weight"), [(1, 1), (2, 1), (1024, 39), (262_144, 10_000), (10**6, 10_000)]
)
def test_v2_weight_from_shares(shares: int, weight: int) -> None:
    # runc's and containerd's mapping of cpu.shares onto cpu.weight.
    assert _shares_to_weight(shares) == weight


class RecordingPlacer:
    """A placer that only remembers what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str | None, tuple[str, ...]]] = []

    def place(self, pid: int, *, repo_path: str | None, argv: Sequence[str]) -> str | None:
        self.calls.append((pid, repo_path, tuple(argv)))
        return None


async def test_factory_hands_every_process_to_the_placer(tmp_path: Path) -> None:
    placer = RecordingPlacer()
    factory = CommandFactory(await detect(), placer=placer)
    repo = str(tmp_path / "r.git")
    await factory.run(GitCommand("init", flags=["--bare", "--quiet"], args=[repo]), repo_path=None)
    batch = GitCommand("cat-file", flags=["--batch-check"])
    async with factory.spawn(batch, repo_path=repo, stdin=subprocess.PIPE) as spawned:
        pass
    started = await factory.start(batch, repo_path=repo)
    await started.aclose()
    init_call, spawn_call, start_call = placer.calls
    assert init_call[1] is None
    assert spawn_call == (spawned.pid, repo, spawned.argv)
    assert start_call == (started.pid, repo, started.argv)

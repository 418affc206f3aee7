"""Helpers for tests on the real cgroupfs: configs under a test's own hierarchy root,
cleanup, and reading where a process is."""

from __future__ import annotations

import os
import zlib
from typing import Any
from uuid import uuid4

from trio_gitaly.config_limits import CgroupsConfig, CgroupsRepositoriesConfig

MOUNTPOINT = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"


def cgroup_config(root: str, *, mountpoint: str = MOUNTPOINT, **options: int) -> CgroupsConfig:
    """`[cgroups]` under `root` with 4 repository groups; `repo_*` options go to those."""
    repositories: dict[str, Any] = {"count": 4}
    top: dict[str, Any] = {}
    for key, value in options.items():
        if key.startswith("repo_"):
            repositories[key.removeprefix("repo_")] = value
        else:
            top[key] = value
    return CgroupsConfig(
        mountpoint=mountpoint,
        hierarchy_root=root,
        repositories=CgroupsRepositoriesConfig(**repositories),
        **top,
    )


def skip_reason(*dirs: str) -> str | None:
    for directory in dirs:
        if not os.path.ismount(directory):
            return f"{directory} is not mounted"
        if not os.access(directory, os.W_OK):
            return f"{directory} is not writable"
    return None


def remove_groups(top: str, group: str) -> None:
    """Remove `top/group` bottom-up, moving its processes to `top` (the fixtures' cleanup)."""
    path = os.path.join(top, group)
    if not os.path.isdir(path):
        return
    for directory, _dirs, _files in os.walk(path, topdown=False):
        with open(os.path.join(directory, "cgroup.procs")) as f:
            pids = f.read().split()
        for pid in pids:
            try:
                with open(os.path.join(top, "cgroup.procs"), "w") as f:
                    f.write(pid)
            except ProcessLookupError:
                pass
        os.rmdir(directory)


def new_root() -> str:
    return f"trio-gitaly-test-{uuid4().hex[:8]}"


def cgroups_of(pid: int) -> dict[str, str]:
    """/proc/<pid>/cgroup as {controller list ("" for v2): path}."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    return {controllers: path for _id, controllers, path in (line.split(":", 2) for line in lines)}


def group_for(key: str, count: int = 4) -> str:
    """The repos-N Gitaly would pick, computed here independently of the package."""
    return f"repos-{zlib.crc32(key.encode()) % count}"

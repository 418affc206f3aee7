"""Gitaly's cgroups: git processes share `count` repository groups under one parent.

`cgroup_manager` creates `<hierarchy_root>/gitaly-<pid>` (with the `[cgroups]` limits) and
its `repos-N` groups (with the `[cgroups.repositories]` limits) on cgroup v1 or v2, and
removes them on exit; the command factory calls `CgroupManager.place` after each spawn.
`prune_stale_groups` removes groups of servers that are gone; `probe` tells
`trio-gitaly check` what the server would do. Facts: behaviour spec §9.
"""

from trio_gitaly.limits.cgroups._describe import probe as probe
from trio_gitaly.limits.cgroups._hierarchy import ParentStats as ParentStats
from trio_gitaly.limits.cgroups._manager import CgroupManager as CgroupManager
from trio_gitaly.limits.cgroups._manager import cgroup_manager as cgroup_manager
from trio_gitaly.limits.cgroups._prune import prune_stale_groups as prune_stale_groups

__all__ = [
    "CgroupManager",
    "ParentStats",
    "cgroup_manager",
    "probe",
    "prune_stale_groups",
]

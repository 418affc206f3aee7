"""The mount table: which filesystem holds a path (the locator asks for its storages)."""

from __future__ import annotations

from trio_gitaly.mounts import Mount, filesystem_of, mount_table


def table(*mounts: tuple[str, str]) -> dict[str, Mount]:
    return {point: Mount(point, fstype, frozenset()) for point, fstype in mounts}


def test_the_longest_mount_point_holding_the_path_wins() -> None:
    mounts = table(("/", "ext4"), ("/srv", "nfs4"), ("/srv/local", "xfs"), ("/sr", "tmpfs"))
    assert filesystem_of("/srv/git/repositories", mounts) == "nfs4"
    assert filesystem_of("/srv", mounts) == "nfs4"
    assert filesystem_of("/srv/local/x", mounts) == "xfs"
    assert filesystem_of("/srvx/y", mounts) == "ext4"  # a prefix of the name is no parent
    assert filesystem_of("/var/x", table(("/srv", "nfs4"))) == ""


def test_this_machines_root_is_mounted() -> None:
    mounts = mount_table()
    assert "/" in mounts
    assert filesystem_of("/proc/self", mounts) == "proc"

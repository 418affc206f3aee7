"""One-line descriptions of the cgroups setup, for `trio-gitaly check` and the manager."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from trio_gitaly.limits.cgroups._hierarchy import (
    CFS_PERIOD_US,
    Limits,
    Unavailable,
    detect,
    root_group,
)

if TYPE_CHECKING:
    from trio_gitaly.config_limits import CgroupsConfig

OFF: Final = "off (cgroups.repositories.count = 0)"
_BYTE_UNITS: Final = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
_US_PER_MS: Final = 1000


def probe(config: CgroupsConfig) -> str:
    """What the server would do with `config`, in one line; creates nothing.

    "off (...)", "v1 at <mountpoint>: would create ..." or "unavailable: <why>; ...".
    """
    if not config.enabled:
        return OFF
    try:
        hierarchy = detect(config)
        hierarchy.check(config)
    except Unavailable as exc:
        return unavailable(str(exc))
    parent = f"{root_group(config)}/gitaly-<pid>"
    return (
        f"{version_text(hierarchy.version)} at {hierarchy.mountpoint}: would create "
        f"{groups_text(config, parent)}"
    )


def unavailable(reason: str) -> str:
    """The line for a configured but unusable setup."""
    return f"unavailable: {reason}; the server runs without cgroups"


def version_text(version: int) -> str:
    """ "v1", or "v2 (experimental)" as Gitaly calls its support."""
    return "v1" if version == 1 else f"v{version} (experimental)"


def groups_text(config: CgroupsConfig, parent: str) -> str:
    """The parent group and the repository groups, with their limits."""
    text = (
        f"{parent} ({limits_text(Limits.parent(config))}) with "
        f"{config.repositories.count} repository groups "
        f"(each: {limits_text(Limits.repository(config))})"
    )
    if config.cgroups_per_repo > 1:
        text += f", {config.cgroups_per_repo} per repository"
    return text


def limits_text(limits: Limits) -> str:
    """ "memory 1 GiB, cpu shares 512, cpu quota 50 ms per 100 ms", or "no limits"."""
    parts = []
    if limits.memory_bytes:
        parts.append(f"memory {bytes_text(limits.memory_bytes)}")
    if limits.cpu_shares:
        parts.append(f"cpu shares {limits.cpu_shares}")
    if limits.cpu_quota_us:
        parts.append(
            f"cpu quota {limits.cpu_quota_us / _US_PER_MS:g} ms "
            f"per {CFS_PERIOD_US / _US_PER_MS:g} ms"
        )
    return ", ".join(parts) or "no limits"


def bytes_text(count: int) -> str:
    """`count` bytes in the largest binary unit it reaches: "1 GiB", "1.5 MiB", "12 B"."""
    for name, size in _BYTE_UNITS:
        if count >= size:
            return f"{count / size:.4g} {name}"
    return f"{count} B"

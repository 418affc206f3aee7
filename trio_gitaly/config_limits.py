"""Config sections for load limits: `[[concurrency]]`, `[pack_objects_limiting]`,
`[adaptive_limiting]` and `[cgroups]`, with Gitaly's key names, defaults and checks.

They live beside config.py (which puts them on `Config`) only to keep that module small.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Final

import msgspec

from trio_gitaly.config_values import ConfigError, Duration, duration_field

# Gitaly's defaults (behaviour spec §8, §9).
DEFAULT_MAX_QUEUE_SIZE: Final = 500
DEFAULT_PACK_OBJECTS_MAX_CONCURRENCY: Final = 200
DEFAULT_PACK_OBJECTS_MAX_QUEUE_LENGTH: Final = 200
DEFAULT_CPU_THROTTLED_THRESHOLD: Final = 0.5
DEFAULT_MEMORY_THRESHOLD: Final = 0.9
DEFAULT_CALIBRATION_INTERVAL_S: Final = 30.0
MIN_CALIBRATION_INTERVAL_S: Final = 0.1
DEFAULT_CGROUPS_MOUNTPOINT: Final = "/sys/fs/cgroup"
DEFAULT_CGROUPS_HIERARCHY_ROOT: Final = "gitaly"

_RPC_RE: Final = re.compile(r"/[A-Za-z_][\w.]*/[A-Za-z_]\w*")

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class ConcurrencyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One `[[concurrency]]` entry: how many calls of `rpc` may run per repository.

    Static: `max_per_repo` (0 = unlimited). Adaptive: starts at `initial_limit` and moves
    between `min_limit` and `max_limit`. Beyond the limit, up to `max_queue_size` calls
    wait, each at most `max_queue_wait` (0 = as long as it takes).
    """

    rpc: str
    max_per_repo: NonNegative = 0
    max_queue_size: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MAX_QUEUE_SIZE
    max_queue_wait: Duration = duration_field(0)
    adaptive: bool = False
    initial_limit: NonNegative = 0
    min_limit: NonNegative = 0
    max_limit: NonNegative = 0


class PackObjectsLimitingConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """How many packs one client IP may have generated at once (loopback is exempt)."""

    max_concurrency: NonNegative = DEFAULT_PACK_OBJECTS_MAX_CONCURRENCY
    # 0 means the default, as in Gitaly.
    max_queue_length: NonNegative = DEFAULT_PACK_OBJECTS_MAX_QUEUE_LENGTH
    max_queue_wait: Duration = duration_field(0)
    adaptive: bool = False
    initial_limit: NonNegative = 0
    min_limit: NonNegative = 0
    max_limit: NonNegative = 0


class AdaptiveLimitingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When the adaptive limits back off; `calibration_interval` is ours (Gitaly: fixed 30s).

    A threshold of 0 means the default, as in Gitaly.
    """

    cpu_throttled_threshold: Annotated[float, msgspec.Meta(ge=0)] = DEFAULT_CPU_THROTTLED_THRESHOLD
    memory_threshold: Annotated[float, msgspec.Meta(ge=0)] = DEFAULT_MEMORY_THRESHOLD
    calibration_interval: Duration = duration_field(DEFAULT_CALIBRATION_INTERVAL_S)


class CgroupsRepositoriesConfig(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """`count` cgroups shared by repositories' git processes, each with these limits."""

    count: NonNegative = 0
    # 0 means 1 when count > 0, as in Gitaly.
    max_cgroups_per_repo: NonNegative = 0
    memory_bytes: NonNegative = 0
    cpu_shares: NonNegative = 0
    cpu_quota_us: NonNegative = 0


class CgroupsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Gitaly's cgroups: a `gitaly-<pid>` parent under `mountpoint`/`hierarchy_root`.

    On only when `repositories.count` > 0. The parent's limits bound all git processes
    together; 0 leaves a limit unset.
    """

    mountpoint: str = DEFAULT_CGROUPS_MOUNTPOINT
    hierarchy_root: str = DEFAULT_CGROUPS_HIERARCHY_ROOT
    memory_bytes: NonNegative = 0
    cpu_shares: NonNegative = 0
    cpu_quota_us: NonNegative = 0
    metrics_enabled: bool = False
    repositories: CgroupsRepositoriesConfig = msgspec.field(
        default_factory=CgroupsRepositoriesConfig
    )

    @property
    def enabled(self) -> bool:
        """Whether the server should place git processes in cgroups at all."""
        return self.repositories.count > 0

    @property
    def cgroups_per_repo(self) -> int:
        """How many of the `count` groups one repository's processes spread over."""
        return self.repositories.max_cgroups_per_repo or 1


def validate_concurrency(entries: Sequence[ConcurrencyConfig]) -> None:
    """Checks msgspec cannot express for `[[concurrency]]`; raise ConfigError naming the key."""
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        key = f"concurrency[{i}]"
        if not _RPC_RE.fullmatch(entry.rpc):
            raise ConfigError(
                f"{key}.rpc",
                f"{entry.rpc!r} is not a full method name like /gitaly.SSHService/SSHUploadPack",
            )
        if entry.rpc in seen:
            raise ConfigError(f"{key}.rpc", f"{entry.rpc} is limited twice")
        seen.add(entry.rpc)
        if entry.adaptive:
            _validate_adaptive(key, entry.initial_limit, entry.min_limit, entry.max_limit, 1)


def validate_pack_objects(section: PackObjectsLimitingConfig) -> None:
    """Checks msgspec cannot express for `[pack_objects_limiting]`."""
    if section.adaptive:
        _validate_adaptive(
            "pack_objects_limiting",
            section.initial_limit,
            section.min_limit,
            section.max_limit,
            0,
        )


def validate_adaptive_limiting(section: AdaptiveLimitingConfig) -> None:
    """Checks msgspec cannot express for `[adaptive_limiting]`."""
    if section.calibration_interval.seconds < MIN_CALIBRATION_INTERVAL_S:
        raise ConfigError(
            "adaptive_limiting.calibration_interval",
            f"must be at least {MIN_CALIBRATION_INTERVAL_S:g}s",
        )


def validate_cgroups(section: CgroupsConfig) -> None:
    """Checks msgspec cannot express for `[cgroups]`: children within their parent."""
    repos = section.repositories
    if repos.max_cgroups_per_repo > repos.count:
        raise ConfigError(
            "cgroups.repositories.max_cgroups_per_repo",
            f"{repos.max_cgroups_per_repo} is more than repositories.count ({repos.count})",
        )
    if not section.mountpoint.startswith("/"):
        raise ConfigError("cgroups.mountpoint", "must be an absolute path")
    root = section.hierarchy_root.strip("/")
    if not root or ".." in root.split("/"):
        raise ConfigError("cgroups.hierarchy_root", "must name a directory below the mountpoint")
    for name in ("memory_bytes", "cpu_shares", "cpu_quota_us"):
        parent, child = getattr(section, name), getattr(repos, name)
        if parent > 0 and child > parent:
            raise ConfigError(
                f"cgroups.repositories.{name}",
                f"{child} is more than the parent's cgroups.{name} ({parent})",
            )


def _validate_adaptive(key: str, initial: int, minimum: int, maximum: int, floor: int) -> None:
    if minimum < floor:
        raise ConfigError(f"{key}.min_limit", f"must be at least {floor} when adaptive")
    if initial < minimum:
        raise ConfigError(f"{key}.initial_limit", f"{initial} is below min_limit ({minimum})")
    if maximum < initial:
        raise ConfigError(f"{key}.max_limit", f"{maximum} is below initial_limit ({initial})")

"""Config sections of the background workers: `[daily_maintenance]`.

Beside config.py (which puts it on `Config`) only to keep that module small.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Final

import msgspec

from trio_gitaly.config_values import ConfigError, Duration, duration_field

# Gitaly's default window: 12:00 local time for 10 minutes, on every storage.
DEFAULT_MAINTENANCE_START_HOUR: Final = 12
DEFAULT_MAINTENANCE_DURATION_S: Final = 10 * 60.0
MAX_MAINTENANCE_DURATION_S: Final = 24 * 3600.0


class DailyMaintenanceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When the daily optimisation of repositories runs, and on which storages.

    Unlike Gitaly, a key left out keeps its default (Gitaly disables maintenance when a
    written section lacks `duration` or `storages`): an empty `storages` means all of
    them. `disabled = true` or `duration = "0"` turns it off.
    """

    start_hour: Annotated[int, msgspec.Meta(ge=0, le=23)] = DEFAULT_MAINTENANCE_START_HOUR
    start_minute: Annotated[int, msgspec.Meta(ge=0, le=59)] = 0
    duration: Duration = duration_field(DEFAULT_MAINTENANCE_DURATION_S)
    storages: tuple[str, ...] = ()
    disabled: bool = False

    @property
    def enabled(self) -> bool:
        """Whether the maintenance worker runs at all."""
        return not self.disabled and self.duration.seconds > 0


def validate_daily_maintenance(
    section: DailyMaintenanceConfig, storage_names: Sequence[str]
) -> None:
    """Checks msgspec cannot express; raise ConfigError naming the key."""
    if section.duration.seconds > MAX_MAINTENANCE_DURATION_S:
        raise ConfigError("daily_maintenance.duration", "must be at most 24h")
    for i, name in enumerate(section.storages):
        if name not in storage_names:
            raise ConfigError(f"daily_maintenance.storages[{i}]", f"no storage named {name!r}")

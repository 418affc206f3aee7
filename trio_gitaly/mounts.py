"""The mount table (/proc/self/mountinfo): which filesystem holds a path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MOUNTINFO: Final = "/proc/self/mountinfo"
_OCTAL_ESCAPE: Final = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo, reduced to what detection needs."""

    point: str
    fstype: str
    super_options: frozenset[str]


def mount_table() -> dict[str, Mount]:
    """The visible mounts by mount point: where several are stacked, the last one listed.

    Raises:
        OSError: the mount table cannot be read.
    """
    table = {}
    with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as lines:
        for line in lines:
            mount = _parse_mountinfo_line(line)
            if mount is not None:
                table[mount.point] = mount
    return table


def _parse_mountinfo_line(line: str) -> Mount | None:
    # "<id> <parent> <major:minor> <root> <mount point> <options> [optional...] - <fstype>
    # <source> <super options>" (proc(5)); optional fields end at the lone "-".
    fields = line.split()
    try:
        separator = fields.index("-", 6)
    except ValueError:
        return None
    if len(fields) < separator + 4:
        return None
    point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m[1], 8)), fields[4])
    return Mount(point, fields[separator + 1], frozenset(fields[separator + 3].split(",")))


def filesystem_of(path: str, table: dict[str, Mount]) -> str:
    """The filesystem type of the mount holding absolute `path` ("" if none matches)."""
    best = ""
    for point in table:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best = point
    return table[best].fstype if best else ""

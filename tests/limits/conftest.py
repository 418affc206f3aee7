"""Fixtures for tests on the real cgroupfs: each test gets its own hierarchy root, removed
afterwards whatever happens; tests skip with the reason where the machine lacks cgroups."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.limits.cgroup_support import MOUNTPOINT, UNIFIED, new_root, remove_groups, skip_reason


@pytest.fixture
def v1_root() -> Iterator[str]:
    """A fresh hierarchy root under the v1 memory and cpu hierarchies."""
    tops = [f"{MOUNTPOINT}/memory", f"{MOUNTPOINT}/cpu"]
    reason = skip_reason(*tops)
    if reason:
        pytest.skip(f"needs cgroup v1: {reason}")
    root = new_root()
    try:
        yield root
    finally:
        for top in tops:
            remove_groups(top, root)


@pytest.fixture
def unified_root() -> Iterator[str]:
    """A fresh hierarchy root in the cgroup2 mount."""
    reason = skip_reason(UNIFIED)
    if reason is None and not os.path.isfile(f"{UNIFIED}/cgroup.controllers"):
        reason = f"{UNIFIED} is not a cgroup2 mount"
    if reason:
        pytest.skip(f"needs cgroup v2: {reason}")
    root = new_root()
    try:
        yield root
    finally:
        remove_groups(UNIFIED, root)

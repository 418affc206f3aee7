"""The allocator tuning applies on this (glibc) machine and leaves the process working."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_takes_the_thresholds() -> None:
    # In a child process: the thresholds are process-wide and would outlive this test.
    code = (
        "from trio_gitaly.malloc import tune_for_streaming as t;"
        "import sys; ok = t(); big = [bytes(1 << 20) for _ in range(64)];"
        "sys.exit(0 if ok and len(big) == 64 else 1)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

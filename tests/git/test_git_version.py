"""Version parsing and git detection, against the machine's git and small fake binaries."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

import pytest
import trio

from trio_gitaly.git.version import (
    MINIMUM_VERSION,
    GitSetupError,
    GitVersion,
    detect,
    parse_version,
)

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("output", "expected", "raw"),
    [
        pytest.param("git version 2.39.5\n", (2, 39, 5), "2.39.5", id="plain"),
        pytest.param("git version 2.47.1.gl1", (2, 47, 1), "2.47.1.gl1", id="gitlab-patch"),
        pytest.param("git version 2.36.0.rc1", (2, 36, 0), "2.36.0.rc1", id="rc"),
        pytest.param("git version 2.43.0.gl2.rc0", (2, 43, 0), "2.43.0.gl2.rc0", id="gl-rc"),
        pytest.param("git version 2.39.5.windows.1", (2, 39, 5), "2.39.5.windows.1", id="windows"),
        pytest.param("git version 2.39.5 (Apple Git-154)\n", (2, 39, 5), "2.39.5", id="apple"),
        pytest.param("git version 2.40.GIT", (2, 40, 0), "2.40.GIT", id="undescribed-build"),
        pytest.param("git version 1.8.3.1", (1, 8, 3), "1.8.3.1", id="four-part"),
        pytest.param(
            "git version 2.45.0.123.gabcdef0.dirty",
            (2, 45, 0),
            "2.45.0.123.gabcdef0.dirty",
            id="dev-build",
        ),
    ],
)
def test_parse_version(output: str, expected: tuple[int, int, int], raw: str) -> None:
    version = parse_version(output)
    assert (version.major, version.minor, version.patch) == expected
    assert version.raw == raw
    assert str(version) == raw


@pytest.mark.parametrize(
    "output",
    [
        pytest.param("", id="empty"),
        pytest.param("git version", id="no-number"),
        pytest.param("git version 2.39", id="two-parts"),
        pytest.param("git version x.y.z", id="letters"),
        pytest.param("version 2.39.5", id="no-git"),
        pytest.param("git version 2.39.5 trailing words", id="trailing-garbage"),
        pytest.param("hello world", id="garbage"),
        pytest.param("git version 2.39.5\ngit version 2.40.0", id="two-lines"),
    ],
)
def test_parse_version_rejects_garbage(output: str) -> None:
    with pytest.raises(ValueError, match="not a git version"):
        parse_version(output)


def test_versions_order_by_number_not_by_raw_text() -> None:
    assert GitVersion(2, 36, 0) < GitVersion(2, 39, 5) < GitVersion(3, 0, 0)
    assert GitVersion(2, 9, 0) < GitVersion(2, 10, 0)
    assert GitVersion(2, 39, 5, raw="2.39.5.windows.1") == GitVersion(2, 39, 5)
    assert str(MINIMUM_VERSION) == "2.36.0"


async def test_detect_machine_git() -> None:
    binary = await detect()
    assert binary.path == _git_on_path()
    assert binary.version >= MINIMUM_VERSION
    assert await detect(binary.path) == binary
    assert await detect("git") == binary


def _git_on_path() -> str:
    on_path = shutil.which("git")
    assert on_path is not None
    return os.path.abspath(on_path)


def _script(directory: Path, body: str, *, mode: int = 0o755) -> str:
    path = directory / "fake-git"
    path.write_text(body)
    path.chmod(mode)
    return str(path)


async def test_detect_missing_path(tmp_path: Path) -> None:
    with pytest.raises(GitSetupError, match=r"^git binary not found: '.*/nope'$"):
        await detect(str(tmp_path / "nope"))


async def test_detect_nothing_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GitSetupError, match="no 'git' on PATH"):
        await detect()


async def test_detect_not_executable(tmp_path: Path) -> None:
    path = _script(tmp_path, "#!/bin/sh\necho git version 2.40.0\n", mode=0o644)
    with pytest.raises(GitSetupError, match="not executable"):
        await detect(path)
    with pytest.raises(GitSetupError, match="not executable"):
        await detect(str(tmp_path))


async def test_detect_too_old(tmp_path: Path) -> None:
    path = _script(tmp_path, "#!/bin/sh\necho 'git version 2.20.0'\n")
    with pytest.raises(GitSetupError) as info:
        await detect(path)
    assert str(info.value) == ("unsupported git version 2.20.0: trio-gitaly needs 2.36.0 or newer")


async def test_detect_new_enough_fake(tmp_path: Path) -> None:
    path = _script(tmp_path, "#!/bin/sh\necho 'git version 2.47.1.gl1'\n")
    binary = await detect(path)
    assert binary.path == path
    assert binary.version == GitVersion(2, 47, 1)


async def test_detect_garbage_output(tmp_path: Path) -> None:
    path = _script(tmp_path, "#!/bin/sh\necho 'not git at all'\n")
    with pytest.raises(GitSetupError, match="unparsable version: 'not git at all'"):
        await detect(path)


async def test_detect_failing_binary(tmp_path: Path) -> None:
    path = _script(tmp_path, "#!/bin/sh\necho 'boom: no libcurl' >&2\nexit 3\n")
    with pytest.raises(GitSetupError, match="exited with status 3: boom: no libcurl"):
        await detect(path)


async def test_detect_unrunnable_binary(tmp_path: Path) -> None:
    # Executable bit, but neither an ELF file nor a script: exec fails.
    path = _script(tmp_path, "\x7fnot an executable format\n")
    with pytest.raises(GitSetupError, match="failed to run: Exec format error"):
        await detect(path)


async def test_detect_hanging_binary_is_killed_with_its_children(tmp_path: Path) -> None:
    # sh waits for its `sleep` child, which holds the stdout pipe: killing only the leader
    # would leave us waiting for EOF for 30 s. The whole group must go.
    path = _script(tmp_path, "#!/bin/sh\nsleep 30\necho 'git version 2.40.0'\n")
    start = trio.current_time()
    with pytest.raises(GitSetupError, match=r"did not answer 'git version' within 0\.3 s"):
        await detect(path, timeout_s=0.3)
    assert trio.current_time() - start < 5

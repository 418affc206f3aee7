"""The per-process runtime directory and the pruning of dead processes' leftovers.

Real directories and real processes: a "dead" pid is a reaped child, a "live" one a running
`sleep` that the fixture kills on teardown.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from trio_gitaly.runtime import RuntimeDirError, prune_dead_process_dirs, runtime_directory

if TYPE_CHECKING:
    from collections.abc import Iterator

NOBODY = 65534


def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()  # reaped: signal 0 now fails with ESRCH
    return proc.pid


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A parent with a short path: pytest's tmp_path can push a socket past sun_path."""
    path = Path(tempfile.mkdtemp(prefix="tg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture
def live_pid() -> Iterator[int]:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def fields(record: logging.LogRecord) -> dict[str, str]:
    """The structured fields the project's JSON formatter reads from `record.fields`."""
    value: dict[str, str] = getattr(record, "fields")  # noqa: B009 - set via `extra`
    return value


def logged(caplog: pytest.LogCaptureFixture) -> set[tuple[str, str]]:
    """(message, basename of the `path` field) for every runtime log record."""
    return {
        (r.getMessage(), os.path.basename(fields(r)["path"]))
        for r in caplog.records
        if r.name == "trio_gitaly.runtime"
    }


# -- runtime_directory ------------------------------------------------------------------------


def test_configured_parent(short_dir: Path) -> None:
    own = short_dir / f"gitaly-{os.getpid()}"
    with runtime_directory(str(short_dir)) as rt:
        assert rt.path == str(own)
        assert rt.internal_socket == f"{own}/sock.d/intern"
        assert mode(own) == 0o700
        assert mode(own / "sock.d") == 0o700
        # The test socket was unlinked again.
        assert os.listdir(own / "sock.d") == []
    assert not own.exists()
    assert short_dir.is_dir()  # the configured parent is not ours to remove


def test_relative_parent_is_made_absolute(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(short_dir)
    (short_dir / "run").mkdir()
    with runtime_directory("run") as rt:
        assert rt.path == f"{short_dir}/run/gitaly-{os.getpid()}"


def test_temporary_parent_is_created_and_removed(
    short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Point mkdtemp at a fixture directory so nothing leaks if the test fails.
    monkeypatch.setattr(tempfile, "tempdir", str(short_dir))
    with runtime_directory("") as rt:
        parent = Path(rt.path).parent
        assert parent.parent == short_dir
        assert parent.name.startswith("trio-gitaly-")
        assert Path(rt.path).name == f"gitaly-{os.getpid()}"
        assert mode(rt.path) == 0o700
        assert mode(f"{rt.path}/sock.d") == 0o700
    assert not parent.exists()


def test_removed_on_exception(short_dir: Path) -> None:
    own = short_dir / f"gitaly-{os.getpid()}"

    def serve() -> None:
        with runtime_directory(str(short_dir)) as rt:
            Path(rt.internal_socket).write_text("something the server left behind")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        serve()
    assert not own.exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o277], ids=oct)
def test_mode_is_0700_whatever_the_umask(short_dir: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with runtime_directory(str(short_dir)) as rt:
            assert mode(rt.path) == 0o700
            assert mode(f"{rt.path}/sock.d") == 0o700
    finally:
        os.umask(old)


def test_leftover_with_our_pid_is_replaced(short_dir: Path) -> None:
    own = short_dir / f"gitaly-{os.getpid()}"
    (own / "sock.d").mkdir(parents=True)
    (own / "sock.d" / "intern").write_text("stale")
    own.chmod(0o755)
    with runtime_directory(str(short_dir)) as rt:
        assert rt.path == str(own)
        assert os.listdir(own / "sock.d") == []
        assert mode(own) == 0o700


def test_siblings_are_pruned_on_entry(short_dir: Path, live_pid: int) -> None:
    dead = short_dir / f"gitaly-{dead_pid()}"
    alive = short_dir / f"gitaly-{live_pid}"
    dead.mkdir()
    alive.mkdir()
    with runtime_directory(str(short_dir)):
        assert not dead.exists()
        assert alive.exists()


def test_missing_configured_parent(short_dir: Path) -> None:
    with pytest.raises(RuntimeDirError, match="prune runtime directories"):
        runtime_directory(str(short_dir / "absent")).__enter__()


def test_too_long_socket_path(tmp_path: Path) -> None:
    # sun_path holds 108 bytes on Linux (104 on macOS); stay well beyond both.
    parent = tmp_path / ("d" * 60) / ("e" * 60)
    parent.mkdir(parents=True)
    assert len(os.fsencode(f"{parent}/gitaly-{os.getpid()}/sock.d/tsocket")) > 120
    with pytest.raises(RuntimeDirError, match="your socket path is likely too long"):
        runtime_directory(str(parent)).__enter__()
    # The half-built directory is cleaned up too.
    assert os.listdir(parent) == []


# -- prune_dead_process_dirs ------------------------------------------------------------------


def test_prune_keeps_exactly_the_live_and_unexpected_entries(
    tmp_path: Path, live_pid: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="trio_gitaly.runtime")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    parent = tmp_path / "run"
    parent.mkdir()

    dead = f"gitaly-{dead_pid()}"
    (parent / dead / "sock.d").mkdir(parents=True)  # removed with its contents
    (parent / "gitaly-0").mkdir()
    (parent / f"gitaly-{live_pid}").mkdir()
    (parent / f"gitaly-{os.getppid()}").mkdir()
    (parent / "gitaly-123").write_text("a regular file")
    (parent / "gitaly-abc").mkdir()
    (parent / "gitaly-1-2").mkdir()
    (parent / "gitaly-+5").mkdir()
    (parent / "gitaly-99999999999").mkdir()  # beyond pid_t
    (parent / "other").mkdir()
    # A symlink named like a dead process's directory must never lead rmtree elsewhere.
    link = f"gitaly-{dead_pid()}"
    (parent / link).symlink_to(elsewhere)

    prune_dead_process_dirs(str(parent))

    assert sorted(os.listdir(parent)) == sorted(
        [
            f"gitaly-{live_pid}",
            f"gitaly-{os.getppid()}",
            "gitaly-123",
            "gitaly-abc",
            "gitaly-1-2",
            "gitaly-+5",
            "gitaly-99999999999",
            "other",
            link,
        ]
    )
    assert elsewhere.is_dir()
    assert logged(caplog) == {
        ("removed leftover gitaly process directory", dead),
        ("removed gitaly directory with no pid", "gitaly-0"),
        ("ignoring file found in gitaly process directory", "gitaly-123"),
        ("ignoring file found in gitaly process directory", link),
        ("could not prune entry", "gitaly-abc"),
        ("could not prune entry", "gitaly-1-2"),
        ("could not prune entry", "gitaly-+5"),
        ("could not prune entry", "gitaly-99999999999"),
        ("could not prune entry", "other"),
    }
    for record in caplog.records:
        assert os.path.dirname(fields(record)["path"]) == str(parent)
        if record.getMessage() == "could not prune entry":
            assert record.levelno == logging.ERROR
            assert "unexpected directory" in fields(record)["error"]


def test_prune_unlistable_parent_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        prune_dead_process_dirs(str(tmp_path / "absent"))


def test_prune_treats_eperm_as_dead(live_pid: int) -> None:
    """A pid owned by another user was reused: the directory is a leftover.

    Run as root, the pruning happens in a forked child that drops to `nobody`, so that
    signal 0 to the root-owned `sleep` fails with EPERM.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to another user")
    parent = Path(tempfile.mkdtemp(prefix="trio-gitaly-test-"))
    try:
        target = parent / f"gitaly-{live_pid}"
        target.mkdir()
        os.chown(parent, NOBODY, NOBODY)
        os.chown(target, NOBODY, NOBODY)
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                prune_dead_process_dirs(str(parent))
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not target.exists()
    finally:
        shutil.rmtree(parent)

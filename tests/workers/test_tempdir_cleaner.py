"""The tempdir cleaner under trio's MockClock: only old top-level entries of `+gitaly/tmp`
go (read-only trees too), never anything outside it, and it comes back every hour."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry

from trio_gitaly.storage.locator import Storage
from trio_gitaly.workers.tempdir_cleaner import (
    CLEAN_INTERVAL_S,
    MAX_AGE_S,
    InvalidCleanRoot,
    clean_tmp_dir,
    cleaned_dirs,
    run,
)

DAY_S = 24 * 3600.0
OLD_S = MAX_AGE_S + DAY_S  # eight days
YOUNG_S = MAX_AGE_S - DAY_S  # six days
METRIC = "trio_gitaly_tempdir_removed_total"
REAL_WAIT_S = 30.0


def aged(path: Path, age_s: float) -> Path:
    when = time.time() - age_s
    os.utime(path, (when, when), follow_symlinks=False)
    return path


def aged_file(path: Path, age_s: float) -> Path:
    path.write_text("x")
    return aged(path, age_s)


def read_only_tree(path: Path, age_s: float) -> Path:
    """A tree its owner cannot delete as it is: a mode-0 directory in a read-only one."""
    (path / "sub/locked").mkdir(parents=True)
    (path / "sub/locked/file").write_text("x")
    (path / "sub/locked").chmod(0)
    (path / "sub").chmod(stat.S_IRUSR | stat.S_IXUSR)
    return aged(path, age_s)


def populate(storage: Path) -> tuple[set[str], set[str]]:
    """Old and young entries in tmp, old ones outside it; (removable, kept) names."""
    tmp = storage / "+gitaly/tmp"
    tmp.mkdir(parents=True)
    (tmp / "old-dir/deeper").mkdir(parents=True)
    (tmp / "old-dir/deeper/file").write_text("x")
    aged(tmp / "old-dir", OLD_S)
    aged_file(tmp / "old-file", OLD_S)
    read_only_tree(tmp / "old-read-only", OLD_S)
    # An old link to a young directory outside tmp: the link goes, the target stays.
    (storage / "target").mkdir()
    (storage / "target/kept").write_text("x")
    (tmp / "old-link").symlink_to(storage / "target")
    aged(tmp / "old-link", OLD_S)
    # Young entries, even with old content.
    (tmp / "young-dir").mkdir()
    aged_file(tmp / "young-dir/ancient", OLD_S)
    aged(tmp / "young-dir", YOUNG_S)
    aged_file(tmp / "young-file", YOUNG_S)
    # Old things outside tmp.
    aged_file(storage / "old-in-storage", OLD_S)
    (storage / "+gitaly/cache").mkdir()
    aged(storage / "+gitaly/cache", OLD_S)
    aged(storage / "+gitaly", OLD_S)
    return {"old-dir", "old-file", "old-read-only", "old-link"}, {"young-dir", "young-file"}


def walks(records: list[logging.LogRecord]) -> list[dict[str, object]]:
    return [
        r.fields  # type: ignore[attr-defined]
        for r in records
        if r.getMessage() == "finished tempdir cleaner walk"
    ]


async def passes_done(caplog: pytest.LogCaptureFixture, walks_logged: int) -> float:
    """Wait until the cleaner has logged `walks_logged` storage walks; the (mock) time.

    Bounded in real time: the mock clock races ahead while the cleaner's thread works.
    """
    deadline = time.monotonic() + REAL_WAIT_S
    while len(walks(caplog.records)) < walks_logged:
        assert time.monotonic() < deadline, "the cleaner did not finish its pass"
        await trio.sleep(1)
    return trio.current_time()


def test_one_tmp_dir_per_storage_path_named_after_the_first_name() -> None:
    storages = [Storage("b", "/srv/one"), Storage("a", "/srv/one"), Storage("c", "/srv/two")]
    assert sorted(cleaned_dirs(storages)) == [
        ("a", "/srv/one/+gitaly/tmp"),
        ("c", "/srv/two/+gitaly/tmp"),
    ]


@pytest.mark.parametrize("path", ["", "storage", "storage/+gitaly", "storage/+gitaly/tmpx"])
def test_refuses_a_directory_that_is_not_a_storage_tmp(tmp_path: Path, path: str) -> None:
    victim = tmp_path / path
    victim.mkdir(parents=True, exist_ok=True)
    old = aged_file(victim / "old", OLD_S)
    with pytest.raises(InvalidCleanRoot, match="invalid tempdir clean root"):
        clean_tmp_dir(str(victim), time.time())
    assert old.exists()


def test_missing_tmp_dir_is_nothing_to_do(tmp_path: Path) -> None:
    assert clean_tmp_dir(str(tmp_path / "+gitaly/tmp"), time.time()) == (0, "")
    assert not (tmp_path / "+gitaly").exists()


async def test_removes_old_entries_only_and_again_every_hour(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="trio_gitaly.tempdir")
    shared, other, missing = tmp_path / "shared", tmp_path / "other", tmp_path / "missing"
    removable, kept = populate(shared)
    other_removable, _ = populate(other)
    missing.mkdir()
    broken = tmp_path / "broken"
    (broken / "+gitaly").mkdir(parents=True)
    (broken / "+gitaly/tmp").write_text("a file where the directory should be")
    storages = [
        Storage("shared-b", str(shared)),
        Storage("shared-a", str(shared)),
        Storage("other", str(other)),
        Storage("missing", str(missing)),
        Storage("broken", str(broken)),
    ]
    registry = CollectorRegistry()

    def removed(storage: str) -> float:
        return registry.get_sample_value(METRIC, {"storage": storage}) or 0.0

    await nursery.start(run, storages, registry)
    first_pass_done = await passes_done(caplog, 4)

    assert set(os.listdir(shared / "+gitaly/tmp")) == kept
    assert set(os.listdir(other / "+gitaly/tmp")) == kept
    assert (removed("shared-a"), removed("other")) == (len(removable), len(other_removable))
    assert removed("shared-b") == 0  # its path was cleaned under "shared-a"
    for storage in (shared, other):
        assert (storage / "target/kept").exists()
        assert (storage / "old-in-storage").exists()
        assert (storage / "+gitaly/cache").exists()
    fields = walks(caplog.records)
    assert sorted(str(f["storage"]) for f in fields) == ["broken", "missing", "other", "shared-a"]
    assert all(isinstance(f["time_ms"], int) for f in fields)
    errors = {f["storage"]: f.get("error") for f in fields}
    assert errors["shared-a"] is errors["other"] is errors["missing"] is None
    assert "Not a directory" in str(errors["broken"])
    assert not (missing / "+gitaly").exists()

    # Aged past the limit after the first pass: the next pass, an hour on, removes it.
    aged(shared / "+gitaly/tmp/young-file", OLD_S)
    await trio.sleep(CLEAN_INTERVAL_S / 2)
    assert (shared / "+gitaly/tmp/young-file").exists()
    second_pass_done = await passes_done(caplog, 8)
    assert second_pass_done - first_pass_done >= CLEAN_INTERVAL_S
    assert set(os.listdir(shared / "+gitaly/tmp")) == {"young-dir"}
    assert removed("shared-a") == len(removable) + 1


def test_read_only_tree_is_removed_by_an_unprivileged_owner() -> None:
    # root ignores directory modes: drop to nobody, as the server would run, so that the
    # modes matter. The control tree shows that a plain rmtree fails on the same shape.
    base = tempfile.mkdtemp(prefix="tg-cleaner-")
    try:
        tmp = Path(base, "storage/+gitaly/tmp")
        tmp.mkdir(parents=True)
        read_only_tree(tmp / "old-read-only", OLD_S)
        read_only_tree(Path(base, "control"), OLD_S)
        prefix: list[str] = []
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv")
            subprocess.run(["chown", "-R", "65534:65534", base], check=True)
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        script = (
            "import shutil, sys, time\n"
            "from trio_gitaly.workers.tempdir_cleaner import clean_tmp_dir\n"
            "print(clean_tmp_dir(sys.argv[1], time.time()))\n"
            "shutil.rmtree(sys.argv[2])\n"
        )
        result = subprocess.run(
            [*prefix, sys.executable, "-c", script, str(tmp), str(Path(base, "control"))],
            capture_output=True,
            text=True,
            cwd=base,
            check=False,
        )
        assert result.stdout == "(1, '')\n"
        assert os.listdir(tmp) == []
        assert "PermissionError" in result.stderr
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", base], check=False)
        shutil.rmtree(base)

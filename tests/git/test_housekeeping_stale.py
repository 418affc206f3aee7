"""Stale-data cleanup: each kind of leftover goes after its grace period, and not before."""

from __future__ import annotations

import os
import time

import pytest
from prometheus_client import CollectorRegistry

from tests.repos import git, rich_repository
from trio_gitaly.git.command import CommandFactory
from trio_gitaly.git.housekeeping import HousekeepingManager, clean_stale_files
from trio_gitaly.git.version import detect

MINUTE_S = 60
HOUR_S = 3600
DAY_S = 24 * HOUR_S
# How far from the grace period the "just older" and "just younger" files are.
MARGIN_S = 60

# (relative path, contents, grace period, filetype label)
LEFTOVERS = [
    ("objects/ab/tmp_obj_123", b"x", DAY_S, "objects"),
    ("objects/pack/tmp_pack_123", b"x", DAY_S, "objects"),
    ("objects/pack/tmp_idx_123", b"x", DAY_S, "objects"),
    ("config.lock", b"x", 15 * MINUTE_S, "locks"),
    ("HEAD.lock", b"x", 15 * MINUTE_S, "locks"),
    ("objects/info/commit-graphs/commit-graph-chain.lock", b"x", 15 * MINUTE_S, "locks"),
    ("objects/pack/multi-pack-index.lock", b"x", 15 * MINUTE_S, "locks"),
    ("refs/heads/broken", b"", DAY_S, "refs"),
    ("refs/heads/main.lock", b"x", HOUR_S, "reflocks"),
    ("refs/tags/nested/v1.lock", b"x", HOUR_S, "reflocks"),
    ("reftable/tables.list.lock", b"x", HOUR_S, "reftablelocks"),
    ("objects/pack/pack-1234.keep", b"receive-pack 42 on host", 7 * DAY_S, "packfilelocks"),
    ("objects/pack/pack-5678.keep", b"fetch-pack 42 on host", 7 * DAY_S, "packfilelocks"),
    ("packed-refs.lock", b"x", HOUR_S, "packedrefslock"),
    ("packed-refs.new", b"x", 15 * MINUTE_S, "packedrefsnew"),
]


@pytest.fixture
def repo(tmp_path: str) -> str:
    path = os.path.join(tmp_path, "repo.git")
    rich_repository(path)
    return path


def make(repo: str, relative: str, contents: bytes, age_s: float) -> str:
    path = os.path.join(repo, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(contents)
    when = time.time() - age_s
    os.utime(path, (when, when))
    return path


@pytest.mark.parametrize(
    ("relative", "contents", "grace_s", "filetype"), LEFTOVERS, ids=[x[0] for x in LEFTOVERS]
)
def test_leftovers_go_after_their_grace_period(
    repo: str, relative: str, contents: bytes, grace_s: int, filetype: str
) -> None:
    path = make(repo, relative, contents, grace_s + MARGIN_S)

    report = clean_stale_files(repo, time.time())

    assert not os.path.exists(path)
    assert report.removed[filetype] == 1
    assert report.failures == []


@pytest.mark.parametrize(
    ("relative", "contents", "grace_s", "filetype"), LEFTOVERS, ids=[x[0] for x in LEFTOVERS]
)
def test_leftovers_younger_than_their_grace_period_stay(
    repo: str, relative: str, contents: bytes, grace_s: int, filetype: str
) -> None:
    path = make(repo, relative, contents, grace_s - MARGIN_S)

    report = clean_stale_files(repo, time.time())

    assert os.path.exists(path)
    assert report.removed[filetype] == 0


def test_unknown_files_stay_whatever_their_age(repo: str) -> None:
    ancient = 365 * DAY_S
    kept = [
        make(repo, "objects/pack/pack-9999.keep", b"kept by an admin", ancient),
        make(repo, "refs/heads/not-empty", b"0" * 40 + b"\n", ancient),
        make(repo, "index.lock", b"x", ancient),
        make(repo, "objects/ab/not_tmp", b"x", ancient),
    ]

    report = clean_stale_files(repo, time.time())

    assert all(os.path.exists(path) for path in kept)
    assert sum(report.removed.values()) == 0


def test_server_info_files_go_at_any_age(repo: str) -> None:
    files = [
        make(repo, "info/refs", b"x", 0),
        make(repo, "info/refs_tmp", b"x", 0),
        make(repo, "objects/info/packs", b"x", 0),
    ]
    unrelated = make(repo, "info/exclude", b"x", 0)

    report = clean_stale_files(repo, time.time())

    assert not any(os.path.exists(path) for path in files)
    assert os.path.exists(unrelated)
    assert report.removed["serverinfo"] == 3


def test_empty_ref_directories_go_after_a_day(repo: str) -> None:
    old, young = time.time() - DAY_S - MARGIN_S, time.time() - DAY_S + MARGIN_S
    # Deepest first: making a child changes its parent's mtime.
    for relative, when in (
        ("refs/heads/a/b", old),
        ("refs/heads/a", old),
        ("refs/heads/young", young),
        ("refs/keep-around", old),
    ):
        os.makedirs(os.path.join(repo, relative), exist_ok=True)
        os.utime(os.path.join(repo, relative), (when, when))

    report = clean_stale_files(repo, time.time())

    assert not os.path.exists(os.path.join(repo, "refs/heads/a"))  # a/b went first
    assert os.path.isdir(os.path.join(repo, "refs/heads/young"))
    assert not os.path.exists(os.path.join(repo, "refs/keep-around"))
    assert os.path.isdir(os.path.join(repo, "refs"))
    assert report.removed["refsemptydir"] == 3


def test_info_attributes_goes(repo: str) -> None:
    path = make(repo, "info/attributes", b"* -diff\n", 0)

    report = clean_stale_files(repo, time.time())

    assert not os.path.exists(path)
    assert report.removed["infoattributes"] == 1


async def test_clean_stale_data_fixes_config_and_counts(repo: str) -> None:
    registry = CollectorRegistry()
    manager = HousekeepingManager(CommandFactory(await detect()), registry)
    git(repo, "config", "remote.origin.url", "https://user:secret@example.com/x.git")
    git(repo, "config", "gitlab.fullpath", "group/project")
    git(repo, "config", "core.splitIndex", "true")
    git(repo, "config", "user.name", "kept")
    with open(os.path.join(repo, "config"), "ab") as config:
        config.write(b"[empty]\n[another]\n")
    make(repo, "HEAD.lock", b"x", HOUR_S)
    before = git(repo, "config", "--local", "--list").decode().splitlines()

    removed = await manager.clean_stale_data(repo)

    after = git(repo, "config", "--local", "--list").decode().splitlines()
    gone = {"remote.origin.url", "gitlab.fullpath", "core.splitindex"}
    assert after == [line for line in before if line.split("=")[0] not in gone]
    with open(os.path.join(repo, "config"), "rb") as config:
        text = config.read()
    assert b"[empty]" not in text
    assert b"[another]" not in text
    assert removed["configkeys"] == 1
    assert removed["configfullpath"] == 1
    assert removed["configsections"] == 2
    assert not os.path.exists(os.path.join(repo, "config.lock"))
    files = "gitaly_housekeeping_pruned_files_total"
    assert registry.get_sample_value(files, {"filetype": "locks"}) == 1
    assert registry.get_sample_value(files, {"filetype": "objects"}) == 0

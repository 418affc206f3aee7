"""The repository counter on generated storages: its numbers, the gauge hidden until the
walk is over, adjustments made while it walks, and Create/RemoveRepository over grpcio."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry

from tests.helpers import Client, storage_path
from tests.helpers import repository as repo
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import serve
from trio_gitaly.rpc.gen.gitaly import repository_pb2 as pb
from trio_gitaly.storage.locator import Storage
from trio_gitaly.workers.repository_counter import METRIC, RepositoryCounter, repository_prefix

SERVICE = "/gitaly.RepositoryService/"

# Counted, with their prefix label.
COUNTED = {
    "group/project.git": "group",
    "group/sub/deeper/other.git": "group",
    "@hashed/aa/bb/aabb.git": "@hashed",
    "@hashed/aa/cc/aacc.git": "@hashed",
    "@hashed/cc/dd/ccdd.git": "@hashed",
    "@pools/ee/ff/eeff.git": "@pools",
    "@cluster/repositories/12/34/1234": "repositories",
    "@cluster/pools/ab/cd/abcd": "pools",
}
# Repositories the walk must not count.
NOT_COUNTED = [
    "+gitaly/tmp/repo123/staged.git",  # Gitaly's internal directory
    "@hashed/cc/dd/ccdd.git/nested.git",  # inside a repository: not descended into
    "m.git",  # one component: no prefix (warned about)
    "@cluster/x.git",  # no prefix after @cluster either
]


def make_repo(path: Path) -> None:
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)


def layout(root: Path) -> None:
    for relative in [*COUNTED, *NOT_COUNTED]:
        make_repo(root / relative)
    # Directories that look almost like repositories, or hold none.
    (root / "deep/a/b/c/d").mkdir(parents=True)
    (root / "group/almost.git/objects").mkdir(parents=True)
    (root / "group/almost.git/refs").mkdir()
    (root / "group/file.git").write_text("not a directory")


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float] | None:
    """The gauge's samples by (path, prefix); None while it is not exported."""
    for family in registry.collect():
        if family.name == METRIC:
            return {(s.labels["path"], s.labels["prefix"]): s.value for s in family.samples}
    return None


@contextlib.contextmanager
def on_log(message: str, action: Callable[[logging.LogRecord], None]) -> Iterator[None]:
    """Run `action` in whatever thread logs `message` to the counter's logger."""

    class Hook(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == message:
                action(record)

    logger = logging.getLogger("trio_gitaly.counter")
    hook, level = Hook(), logger.level
    logger.addHandler(hook)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(hook)
        logger.setLevel(level)


async def fresh_count(path: str) -> dict[tuple[str, str], float] | None:
    """What a counter built now finds: the oracle for adjusted counts."""
    registry = CollectorRegistry()
    await RepositoryCounter([Storage("x", path)], registry).run()
    return samples(registry)


@pytest.mark.parametrize(
    ("relative", "prefix"),
    [
        ("@hashed/aa/bb/x.git", "@hashed"),
        ("group/project.git", "group"),
        ("@cluster/repositories/1/2/3", "repositories"),
        ("@cluster/pools", None),
        ("@cluster/x.git", None),
        ("project.git", None),
    ],
)
def test_prefix_as_gitaly(relative: str, prefix: str | None) -> None:
    assert repository_prefix(tuple(relative.split("/"))) == prefix


async def test_counts_a_generated_layout_walking_shared_paths_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    layout(first)
    make_repo(second / "other/one.git")
    storages = [
        Storage("a", str(first)),
        Storage("b", str(first)),  # same path as "a": walked once, counted once
        Storage("c", str(second)),
    ]
    registry = CollectorRegistry()
    counter = RepositoryCounter(storages, registry)
    caplog.set_level(logging.INFO, logger="trio_gitaly.counter")

    await counter.run()

    expected: dict[tuple[str, str], float] = {}
    for prefix in COUNTED.values():
        expected[(str(first), prefix)] = expected.get((str(first), prefix), 0) + 1
    expected[(str(second), "other")] = 1
    assert samples(registry) == expected
    records = [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records]
    started = [f["storage_path"] for m, f in records if m == "starting to count repositories"]
    assert started == [str(first), str(second)]
    completed = [f for m, f in records if m == "completed counting repositories"]
    assert [f["storage_path"] for f in completed] == [str(first), str(second)]
    assert all(isinstance(f["counting_duration_ms"], int) for f in completed)
    assert records[0][0] == "counting repositories"
    assert records[-1][0] == "completed counting all repositories"
    assert "counting_duration" in records[-1][1]
    malformed = [f for m, f in records if m == "counting repositories failed due to malformed path"]
    assert sorted(f["error"] for f in malformed) == [
        "malformed repository path '@cluster/x.git'",
        "malformed repository path 'm.git'",
    ]


async def test_gauge_is_hidden_until_every_storage_is_walked(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    make_repo(first / "group/one.git")
    make_repo(second / "m.git")  # warned about while the second walk runs
    make_repo(second / "group/two.git")
    registry = CollectorRegistry()
    counter = RepositoryCounter([Storage("a", str(first)), Storage("b", str(second))], registry)
    seen: dict[str, object] = {}

    def look(record: logging.LogRecord) -> None:
        key = record.getMessage()
        if key == "starting to count repositories":
            key += " " + record.fields["storage_path"]  # type: ignore[attr-defined]
        seen[key] = samples(registry)

    assert samples(registry) is None
    with (
        on_log("starting to count repositories", look),
        on_log("counting repositories failed due to malformed path", look),
    ):
        await counter.run()

    # The first storage was fully counted, the second was being walked: still hidden.
    assert seen == {
        f"starting to count repositories {first}": None,
        f"starting to count repositories {second}": None,
        "counting repositories failed due to malformed path": None,
    }
    assert samples(registry) == {(str(first), "group"): 1, (str(second), "group"): 1}


async def test_cancelled_walk_keeps_the_gauge_hidden(tmp_path: Path) -> None:
    make_repo(tmp_path / "group/one.git")
    registry = CollectorRegistry()
    counter = RepositoryCounter([Storage("a", str(tmp_path))], registry)
    with trio.CancelScope() as scope:
        scope.cancel()
        await counter.run()
    assert samples(registry) is None


async def test_changes_before_the_walk_are_counted_once(tmp_path: Path) -> None:
    make_repo(tmp_path / "group/old.git")
    registry = CollectorRegistry()
    counter = RepositoryCounter([Storage("a", str(tmp_path))], registry)
    for created in (tmp_path / "group/new.git", tmp_path / "other/new.git"):
        with counter.tracking("a", str(created)) as change:
            make_repo(created)
            change.record(+1)
    with counter.tracking("a", str(tmp_path / "group/old.git")) as change:
        shutil.rmtree(tmp_path / "group/old.git")
        change.record(-1)
    await counter.run()

    assert samples(registry) == {(str(tmp_path), "group"): 1, (str(tmp_path), "other"): 1}
    assert samples(registry) == await fresh_count(str(tmp_path))


async def test_changes_during_the_walk_are_counted_once(tmp_path: Path) -> None:
    # Top-level order of the walk: "0.git" (malformed: a hook point), "@hashed", "group",
    # "m.git" (the hook used here), "other", "zz".
    for relative in ["0.git", "@hashed/aa/bb/x.git", "group/a.git", "m.git", "other/b.git"]:
        make_repo(tmp_path / relative)
    (tmp_path / "zz").mkdir()
    registry = CollectorRegistry()
    counter = RepositoryCounter([Storage("a", str(tmp_path))], registry)
    held = contextlib.ExitStack()

    @contextlib.contextmanager
    def change(relative: str, delta: int) -> Iterator[None]:
        path = tmp_path / relative
        with counter.tracking("a", str(path)) as tracked:
            if delta > 0:
                make_repo(path)
            else:
                shutil.rmtree(path)
            yield
            tracked.record(delta)

    def while_walking(record: logging.LogRecord) -> None:
        if "'m.git'" not in record.fields["error"]:  # type: ignore[attr-defined]
            return
        # Behind the walk: it counted the state before the change.
        for relative, delta in [("group/new.git", +1), ("group/a.git", -1)]:
            with change(relative, delta):
                pass
        # Ahead of the walk, over before it gets there: the walk sees the result.
        with change("other/c.git", +1):
            pass
        # Ahead, in a directory the walk listed before it existed: it never gets there.
        with change("n-late/d.git", +1):
            pass
        # Ahead, still in flight when the walk passes and when it ends.
        held.enter_context(change("zz/e.git", +1))

    with on_log("counting repositories failed due to malformed path", while_walking):
        await counter.run()
    root = str(tmp_path)
    assert samples(registry) == {
        (root, "@hashed"): 1,
        (root, "group"): 1,
        (root, "n-late"): 1,
        (root, "other"): 2,
    }
    held.close()

    assert samples(registry) == {
        (root, "@hashed"): 1,
        (root, "group"): 1,
        (root, "n-late"): 1,
        (root, "other"): 2,
        (root, "zz"): 1,
    }
    assert samples(registry) == await fresh_count(root)


async def test_create_and_remove_repository_move_the_gauge(
    nursery: trio.Nursery, config: Config, connect: Callable[..., Client]
) -> None:
    root = storage_path(config)
    make_repo(Path(root, "@hashed/11/22/1122.git"))
    running = await nursery.start(serve, config)
    client = connect(running.addresses["tcp"][0])
    registry = running.metrics.registry

    def value(prefix: str) -> float | None:
        found = samples(registry)
        return None if found is None else found.get((root, prefix))

    with trio.fail_after(30):
        while value("@hashed") is None:
            await trio.sleep(0.01)
    assert value("@hashed") == 1

    created = repo("@hashed/aa/bb/aabb.git")
    await client.unary(
        SERVICE + "CreateRepository",
        pb.CreateRepositoryRequest(repository=created),
        pb.CreateRepositoryResponse,
    )
    assert value("@hashed") == 2
    await client.unary(
        SERVICE + "CreateRepository",
        pb.CreateRepositoryRequest(repository=repo("group/project.git")),
        pb.CreateRepositoryResponse,
    )
    assert value("group") == 1
    # A failed create changes nothing.
    await client.error(
        SERVICE + "CreateRepository",
        pb.CreateRepositoryRequest(repository=created),
        pb.CreateRepositoryResponse,
    )
    assert value("@hashed") == 2

    await client.unary(
        SERVICE + "RemoveRepository",
        pb.RemoveRepositoryRequest(repository=created),
        pb.RemoveRepositoryResponse,
    )
    assert value("@hashed") == 1
    assert not os.path.exists(os.path.join(root, "@hashed/aa/bb/aabb.git"))

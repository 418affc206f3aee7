"""The cat-file cache against real git processes: answers, reuse, and who kills what.

Answers are compared with the git CLI. Process checks use /proc and signal 0: a pid
we reaped is gone for good (barring reuse, which the short test windows make moot).
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import TYPE_CHECKING

import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest

from tests.repos import FastImport, git, rich_repository
from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.catfile import CatfileCache, ObjectInfo
from trio_gitaly.git.catfile_reader import ObjectTooLargeError
from trio_gitaly.git.command import CommandFactory
from trio_gitaly.git.objects import parse_commit, parse_tree
from trio_gitaly.git.version import detect

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")

CHUNK = 128 * 1024


@pytest.fixture
async def factory() -> CommandFactory:
    return CommandFactory(await detect())


@pytest.fixture(params=["sha1", "sha256"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    path = str(tmp_path / "repo.git")
    return path, rich_repository(path, request.param)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def cache(
    nursery: trio.Nursery, factory: CommandFactory, registry: CollectorRegistry
) -> AsyncIterator[CatfileCache]:
    cache = CatfileCache(factory, registry)
    await nursery.start(cache.run_evictor)
    yield cache
    await cache.aclose()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


async def _wait_until(predicate: Callable[[], bool], timeout_s: float = 1.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():
            await trio.sleep(0.01)


def _count(registry: CollectorRegistry, name: str, kind: str | None = None) -> float:
    value = registry.get_sample_value(name, {"type": kind} if kind else {})
    return value or 0.0


def _all_objects(path: str) -> list[tuple[str, str, int]]:
    out = git(path, "cat-file", "--batch-all-objects", "--batch-check").decode()
    return [
        (oid, kind, int(size)) for oid, kind, size in (line.split() for line in out.splitlines())
    ]


# --- answers -------------------------------------------------------------------------


async def test_info_and_read_match_git_for_every_object(
    cache: CatfileCache, repo: tuple[str, dict[str, str]]
) -> None:
    path, _ = repo
    objects = _all_objects(path)
    async with cache.reader(path) as reader:
        for oid, kind, size in objects:
            assert await reader.info(oid) == ObjectInfo(oid, kind, size)
            result = await reader.read(oid)
            assert result is not None
            assert result == (ObjectInfo(oid, kind, size), git(path, "cat-file", kind, oid))


async def test_revisions_and_parsing(cache: CatfileCache, repo: tuple[str, dict[str, str]]) -> None:
    path, oids = repo
    async with cache.reader(path) as reader:
        head = git(path, "rev-parse", "HEAD").decode().strip()
        assert (await reader.info("HEAD")) == ObjectInfo(
            head, "commit", len(git(path, "cat-file", "commit", head))
        )
        readme = await reader.read(b"main:README.md")
        assert readme is not None
        assert readme[1] == b"# readme\n"
        commit = await reader.read(oids["merge"])
        assert commit is not None
        assert parse_commit(commit[0].oid, commit[1]).parents == (oids["latin1"], oids["feature"])
        tree = await reader.read("HEAD^{tree}")
        assert tree is not None
        names = [entry.path for entry in parse_tree(tree[1], len(tree[0].oid) // 2)]
        assert names == git(path, "ls-tree", "--name-only", "-z", "HEAD").split(b"\0")[:-1]
        tag = await reader.info("v1.0.0")
        assert tag is not None
        assert tag.type == "tag"


async def test_missing_objects_are_none(
    cache: CatfileCache, repo: tuple[str, dict[str, str]]
) -> None:
    path, _ = repo
    async with cache.reader(path) as reader:
        assert await reader.info("0" * 40) is None
        assert await reader.read("no-such-ref") is None
        assert await reader.read("HEAD:no such file") is None
        assert await reader.stream("refs/heads/nope", _never) is None
        assert await reader.info("") is None
        assert await reader.info("HEAD") is not None


async def _never(chunk: bytes) -> None:
    raise AssertionError("send called for a missing object")


@pytest.mark.parametrize("revision", ["HEAD\nHEAD", b"HEAD\0", "\n"])
async def test_newline_and_nul_are_refused_before_git_sees_them(
    cache: CatfileCache, repo: tuple[str, dict[str, str]], revision: str | bytes
) -> None:
    path, _ = repo
    async with cache.reader(path) as reader:
        with pytest.raises(GitalyError) as info:
            await reader.info(revision)
        assert info.value.code == StatusCode.INVALID_ARGUMENT
        # Nothing was sent: the process is still in step.
        assert await reader.info("HEAD") is not None
        pid = reader.pid
    async with cache.reader(path) as reader:
        assert reader.pid == pid


async def test_revisions_with_whitespace_and_carriage_returns_are_sent_verbatim(
    cache: CatfileCache, tmp_path: Path
) -> None:
    path = str(tmp_path / "r.git")
    build = FastImport()
    names = [b"\r", b"a\r", b"\r\r", b" lead", b"trail ", b"tab\t", b"sp ace"]
    build.commit("refs/heads/main", b"m\n", {n: n + b"!" for n in names}, parents=[])
    build.commit("refs/heads/main", b"m\n", {b"d\r/f": b"in a dir\n"})
    build.run(path)
    async with cache.reader(path) as reader:
        for name in names:
            assert await reader.read(b"main:" + name) == (
                ObjectInfo(
                    git(path, "rev-parse", "main:" + name.decode()).decode().strip(),
                    "blob",
                    len(name) + 1,
                ),
                name + b"!",
            )
        tree = await reader.info(b"main:d\r")
        assert tree is not None
        assert tree.type == "tree"
        assert await reader.info(b"main:d") is None
        assert await reader.info(b"main:a") is None


async def test_large_blob_streams_in_bounded_chunks_and_limits_keep_sync(
    cache: CatfileCache, repo: tuple[str, dict[str, str]]
) -> None:
    path, _ = repo
    expected = git(path, "cat-file", "blob", "main:large.bin")
    assert len(expected) == 5 * 1024 * 1024
    chunks: list[bytes] = []

    async def send(chunk: bytes) -> None:
        assert 0 < len(chunk) <= CHUNK
        chunks.append(chunk)

    async with cache.reader(path) as reader:
        pid = reader.pid
        info = await reader.stream("main:large.bin", send)
        assert info is not None
        assert info.size == len(expected)
        assert b"".join(chunks) == expected
        assert len(chunks) == len(expected) // CHUNK  # full chunks, not pipe-sized ones
        for limit in (0, 1, 1000, CHUNK + 1, len(expected) - 1, len(expected), len(expected) + 5):
            chunks.clear()
            info = await reader.stream("main:large.bin", send, limit=limit)
            assert info is not None
            assert info.size == len(expected)
            assert b"".join(chunks) == expected[:limit]
            # The rest was drained: the next answer is the right one.
            readme = await reader.read("main:README.md")
            assert readme is not None
            assert readme[1] == b"# readme\n"
        small: list[bytes] = []

        async def send_small(chunk: bytes) -> None:
            small.append(chunk)

        await reader.stream("main:large.bin", send_small, limit=10_000, chunk_bytes=4096)
        assert [len(c) for c in small] == [4096, 4096, 10_000 - 8192]
        with pytest.raises(ObjectTooLargeError):
            await reader.read("main:large.bin", max_size=1024)
        assert (await reader.read("main:README.md", max_size=1024)) is not None
    async with cache.reader(path) as reader:
        assert reader.pid == pid


async def test_reader_is_unusable_after_its_block(cache: CatfileCache, tmp_path: Path) -> None:
    path = str(tmp_path / "r.git")
    rich_repository(path)
    async with cache.reader(path) as reader:
        pass
    with pytest.raises(trio.ClosedResourceError):
        await reader.info("HEAD")


async def test_concurrent_use_of_one_reader_is_refused(cache: CatfileCache, tmp_path: Path) -> None:
    path = str(tmp_path / "r.git")
    rich_repository(path)
    started = trio.Event()
    release = trio.Event()

    async def slow(chunk: bytes) -> None:
        started.set()
        await release.wait()

    async with cache.reader(path) as reader, trio.open_nursery() as nursery:
        nursery.start_soon(reader.stream, "main:README.md", slow)
        await started.wait()
        with pytest.raises(trio.BusyResourceError):
            await reader.info("HEAD")
        release.set()


async def test_object_and_alternate_directories(cache: CatfileCache, tmp_path: Path) -> None:
    path = str(tmp_path / "r.git")
    rich_repository(path)
    quarantine = tmp_path / "quarantine"
    quarantine.mkdir()
    env = {**os.environ, "GIT_OBJECT_DIRECTORY": str(quarantine), "GIT_CONFIG_GLOBAL": "/dev/null"}
    oid = (
        subprocess.run(
            ["git", "-C", path, "hash-object", "-w", "--stdin"],
            input=b"quarantined\n",
            env=env,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .strip()
    )
    async with cache.reader(path) as reader:
        assert await reader.info(oid) is None
        assert await reader.info("HEAD") is not None
    objects = os.path.join(path, "objects")
    async with cache.reader(path, object_dir=str(quarantine), alternate_dirs=[objects]) as reader:
        assert await reader.read(oid) == (ObjectInfo(oid, "blob", 12), b"quarantined\n")
        assert await reader.info("HEAD") is not None


# --- the cache -----------------------------------------------------------------------


async def test_process_is_reused_and_counted(
    cache: CatfileCache, registry: CollectorRegistry, tmp_path: Path
) -> None:
    path = str(tmp_path / "r.git")
    rich_repository(path)
    async with cache.reader(path) as reader:
        pid = reader.pid
        await reader.read("HEAD")
        await reader.info("HEAD")
        await reader.read("main:README.md")
    assert cache.idle_count == 1
    async with cache.reader(path) as reader:
        assert reader.pid == pid
    assert _count(registry, "gitaly_catfile_cache_total", "miss") == 1
    assert _count(registry, "gitaly_catfile_cache_total", "hit") == 1
    assert _count(registry, "gitaly_catfile_processes_total") == 1
    assert _count(registry, "gitaly_catfile_processes") == 1
    assert _count(registry, "gitaly_catfile_lookups_total", "commit") == 1
    assert _count(registry, "gitaly_catfile_lookups_total", "blob") == 1
    assert _count(registry, "gitaly_catfile_lookups_total", "info") == 1
    assert _count(registry, "gitaly_catfile_cache_members", "object_reader") == 1
    exposition = generate_latest(registry).decode()
    for name in (
        "gitaly_catfile_processes ",
        "gitaly_catfile_processes_total ",
        "gitaly_catfile_cache_total{",
    ):
        assert name in exposition


async def test_exception_between_requests_returns_the_process(
    cache: CatfileCache, tmp_path: Path
) -> None:
    path = str(tmp_path / "r.git")
    rich_repository(path)
    pids = []

    async def fail_after_a_request() -> None:
        async with cache.reader(path) as reader:
            pids.append(reader.pid)
            await reader.info("HEAD")
            raise KeyError("the RPC failed after a complete request")

    with pytest.raises(KeyError):
        await fail_after_a_request()
    async with cache.reader(path) as reader:
        assert reader.pid == pids[0]


async def test_cancelled_mid_stream_kills_the_process(
    cache: CatfileCache, registry: CollectorRegistry, tmp_path: Path
) -> None:
    path = str(tmp_path / "r.git")
    rich_repository(path)
    with trio.CancelScope() as scope:
        async with cache.reader(path) as reader:
            pid = reader.pid

            async def cancel_on_first_chunk(chunk: bytes) -> None:
                scope.cancel()
                await trio.lowlevel.checkpoint()

            await reader.stream("main:large.bin", cancel_on_first_chunk)
    assert scope.cancelled_caught
    await _wait_until(lambda: not _alive(pid))
    assert cache.idle_count == 0
    assert _count(registry, "gitaly_catfile_cache_total", "dirty") == 1
    assert _count(registry, "gitaly_catfile_processes") == 0
    async with cache.reader(path) as reader:
        assert reader.pid != pid
        assert await reader.info("HEAD") is not None


async def test_send_raising_kills_the_process(cache: CatfileCache, tmp_path: Path) -> None:
    path = str(tmp_path / "r.git")
    rich_repository(path)

    async def fail(chunk: bytes) -> None:
        raise ConnectionError("client went away")

    async with cache.reader(path) as reader:
        pid = reader.pid
        with pytest.raises(ConnectionError):
            await reader.stream("main:large.bin", fail)
        with pytest.raises(GitalyError, match="out of sync"):
            await reader.info("HEAD")
    await _wait_until(lambda: not _alive(pid))
    assert cache.idle_count == 0


async def test_process_killed_while_idle_is_replaced(
    cache: CatfileCache, registry: CollectorRegistry, tmp_path: Path
) -> None:
    path = str(tmp_path / "r.git")
    rich_repository(path)
    async with cache.reader(path) as reader:
        pid = reader.pid
    os.kill(pid, signal.SIGKILL)
    await _wait_until(lambda: not _alive(pid))
    async with cache.reader(path) as reader:
        assert reader.pid != pid
        assert await reader.info("HEAD") is not None
    assert _count(registry, "gitaly_catfile_cache_total", "hit") == 0
    assert _count(registry, "gitaly_catfile_processes") == 1


async def test_git_dying_mid_checkout_is_an_internal_error(
    cache: CatfileCache, tmp_path: Path
) -> None:
    path = str(tmp_path / "r.git")
    rich_repository(path)
    async with cache.reader(path) as reader:
        os.kill(reader.pid, signal.SIGKILL)
        with pytest.raises(GitalyError) as info:
            await reader.info("HEAD")
        assert info.value.code == StatusCode.INTERNAL
    assert cache.idle_count == 0


@pytest.mark.parametrize("max_idle", [1, 2])
async def test_max_idle_evicts_the_oldest(
    nursery: trio.Nursery,
    factory: CommandFactory,
    registry: CollectorRegistry,
    tmp_path: Path,
    max_idle: int,
) -> None:
    cache = CatfileCache(factory, registry, max_idle=max_idle)
    await nursery.start(cache.run_evictor)
    paths = []
    for index in range(4):
        path = str(tmp_path / f"r{index}.git")
        git(".", "init", "--bare", "--quiet", path)
        paths.append(path)
    pids = []
    for path in paths:
        async with cache.reader(path) as reader:
            pids.append(reader.pid)
        assert cache.idle_count <= max_idle
        assert _count(registry, "gitaly_catfile_cache_members", "object_reader") <= max_idle
    assert cache.idle_count == max_idle
    assert [_alive(pid) for pid in pids] == [False] * (4 - max_idle) + [True] * max_idle
    assert _count(registry, "gitaly_catfile_processes") == max_idle
    await cache.aclose()


async def test_several_idle_processes_per_key_most_recent_first(
    cache: CatfileCache, registry: CollectorRegistry, tmp_path: Path
) -> None:
    path = str(tmp_path / "r.git")
    git(".", "init", "--bare", "--quiet", path)
    async with cache.reader(path) as first, cache.reader(path) as second:
        assert first.pid != second.pid
        pids = first.pid, second.pid
    # Both stay: concurrent RPCs on one repository reuse them instead of respawning.
    assert cache.idle_count == 2
    assert all(_alive(pid) for pid in pids)
    async with cache.reader(path) as one, cache.reader(path) as two:
        # `first` went back last, so it comes out first; then `second`.
        assert (one.pid, two.pid) == pids
    assert _count(registry, "gitaly_catfile_cache_total", "hit") == 2
    assert _count(registry, "gitaly_catfile_processes_total") == 2


async def test_idle_processes_expire(
    nursery: trio.Nursery, factory: CommandFactory, registry: CollectorRegistry, tmp_path: Path
) -> None:
    cache = CatfileCache(factory, registry, ttl_s=0.2, eviction_interval_s=0.05)
    await nursery.start(cache.run_evictor)
    path = str(tmp_path / "r.git")
    git(".", "init", "--bare", "--quiet", path)
    async with cache.reader(path) as reader:
        pid = reader.pid
    # Returned and idle (checked before any checkpoint: a loaded machine may sleep past
    # the TTL), then closed by the evictor once the TTL has passed.
    assert _alive(pid)
    assert cache.idle_count == 1
    await _wait_until(lambda: cache.idle_count == 0)
    await _wait_until(lambda: not _alive(pid))
    assert _count(registry, "gitaly_catfile_processes") == 0
    assert _count(registry, "gitaly_catfile_cache_members", "object_reader") == 0


async def test_evictor_cancellation_kills_every_idle_process(
    nursery: trio.Nursery, factory: CommandFactory, registry: CollectorRegistry, tmp_path: Path
) -> None:
    cache = CatfileCache(factory, registry)
    paths = []
    for index in range(3):
        path = str(tmp_path / f"r{index}.git")
        git(".", "init", "--bare", "--quiet", path)
        paths.append(path)
    pids = []
    stopped = trio.Event()

    scope = trio.CancelScope()

    async def evictor(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await cache.run_evictor(task_status=task_status)
        stopped.set()

    await nursery.start(evictor)
    for path in paths[:2]:
        async with cache.reader(path) as reader:
            pids.append(reader.pid)
    # One still checked out when the evictor stops: closed on return, not pooled.
    async with cache.reader(paths[2]) as reader:
        pids.append(reader.pid)
        assert cache.idle_count == 2
        scope.cancel()
        await stopped.wait()
        assert cache.idle_count == 0
        assert not _alive(pids[0])
        assert not _alive(pids[1])
        assert _alive(pids[2])
        assert await reader.info("HEAD") is None  # an empty repository; still working
    assert not any(_alive(pid) for pid in pids)
    assert cache.idle_count == 0
    assert _count(registry, "gitaly_catfile_processes") == 0

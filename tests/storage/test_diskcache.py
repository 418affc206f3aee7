"""The disk cache on a real storage directory: keys, generations, leases and entries."""

from __future__ import annotations

import hashlib
import os
import time
import uuid

import pytest
import trio
from prometheus_client import CollectorRegistry

from trio_gitaly import __version__
from trio_gitaly.rpc.gen.gitaly import shared_pb2
from trio_gitaly.storage.diskcache import DiskCache
from trio_gitaly.storage.diskcache_keys import (
    STALE_AGE_S,
    CacheKey,
    MissingLeaseFileError,
    PendingLeaseError,
    compose_key,
)
from trio_gitaly.storage.locator import Locator, Storage

METHOD = "/gitaly.SmartHTTPService/InfoRefsUploadPack"
REPO = shared_pb2.Repository(storage_name="default", relative_path="group/project.git")


@pytest.fixture
def storage(tmp_path: object) -> str:
    return str(tmp_path)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def cache(storage: str, registry: CollectorRegistry) -> DiskCache:
    return DiskCache(Locator([Storage("default", storage)]), registry)


def key(request: bytes = b"request") -> CacheKey:
    return CacheKey(REPO, METHOD, request)


def state(storage: str, *parts: str) -> str:
    return os.path.join(storage, "+gitaly", "state", "group", "project.git", *parts)


def generation(storage: str) -> str:
    with open(state(storage, "latest"), encoding="utf-8") as f:
        return f.read()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def make_old(path: str) -> None:
    old = time.time() - STALE_AGE_S - 60
    os.utime(path, (old, old))


def test_key_is_sha256_of_length_prefixed_parts() -> None:
    generation_id = "0b8ebd8e-9d0b-4a1e-9dbb-8e4c2f1b1f6a"
    parts = [__version__, METHOD, generation_id, "\x0a\x02hi", ""]
    reference = "".join(f"{len(p.encode()):08x}{p}" for p in parts)
    assert compose_key(generation_id, METHOD, b"\x0a\x02hi") == (
        hashlib.sha256(reference.encode()).hexdigest()
    )
    # The length prefixes keep differently split parts apart.
    assert compose_key("ab", "/m", b"c") != compose_key("a", "/m", b"bc")


def test_first_lookup_creates_the_generation(cache: DiskCache, storage: str) -> None:
    path = cache.entry_path(key())
    current = generation(storage)
    assert str(uuid.UUID(current)) == current
    digest = compose_key(current, METHOD, b"request")
    assert path == os.path.join(storage, "+gitaly", "cache", digest[:2], digest[2:])
    assert cache.entry_path(key()) == path
    assert cache.entry_path(key(b"other")) != path


def test_lease_bypasses_lookups_then_starts_a_new_generation(
    cache: DiskCache, storage: str, registry: CollectorRegistry
) -> None:
    before = cache.entry_path(key())
    old_generation = generation(storage)
    lease = cache.lease(REPO)
    lease.begin()
    assert not os.path.exists(state(storage, "latest"))
    assert len(os.listdir(state(storage, "pending"))) == 1
    with pytest.raises(PendingLeaseError):
        cache.entry_path(key())
    assert sample(registry, "gitaly_diskcache_errors_total", error="ErrPendingExists") == 1

    lease.end()
    assert os.listdir(state(storage, "pending")) == []
    assert generation(storage) != old_generation
    assert cache.entry_path(key()) != before


def test_overlapping_leases_bypass_until_the_last_ends(cache: DiskCache) -> None:
    first, second = cache.lease(REPO), cache.lease(REPO)
    first.begin()
    second.begin()
    first.end()
    with pytest.raises(PendingLeaseError):
        cache.entry_path(key())
    second.end()
    assert cache.entry_path(key())


def test_stale_pending_lease_is_removed_and_replaces_the_generation(
    cache: DiskCache, storage: str
) -> None:
    cache.entry_path(key())
    before = generation(storage)
    lease = cache.lease(REPO)
    lease.begin()
    # The mutation was cut off by a crash: its lease never ended.
    (pending,) = os.listdir(state(storage, "pending"))
    make_old(state(storage, "pending", pending))
    cache.entry_path(key())
    assert os.listdir(state(storage, "pending")) == []
    assert generation(storage) != before


def test_ending_a_lease_whose_file_vanished(
    cache: DiskCache, storage: str, registry: CollectorRegistry
) -> None:
    lease = cache.lease(REPO)
    lease.begin()
    (pending,) = os.listdir(state(storage, "pending"))
    os.unlink(state(storage, "pending", pending))
    with pytest.raises(MissingLeaseFileError):
        lease.end()
    assert sample(registry, "gitaly_diskcache_errors_total", error="ErrMissingLeaseFile") == 1
    assert os.path.exists(state(storage, "latest"))


async def test_entries_are_published_only_on_commit(
    cache: DiskCache, registry: CollectorRegistry
) -> None:
    path, entry = cache.open_entry(key())
    assert entry is None
    writer = cache.new_entry(path)
    await writer.write(b"half")
    assert not os.path.exists(path)
    writer.discard()
    assert os.listdir(os.path.dirname(path)) == []

    writer = cache.new_entry(path)
    await writer.write(b"hello ")
    await writer.write(b"world")
    writer.commit()
    path, entry = cache.open_entry(key())
    assert entry is not None
    with entry:
        assert entry.read() == b"hello world"
    assert os.listdir(os.path.dirname(path)) == [os.path.basename(path)]
    assert sample(registry, "gitaly_diskcache_requests_total") == 2
    assert sample(registry, "gitaly_diskcache_miss_total") == 1
    assert sample(registry, "gitaly_diskcache_bytes_stored_total") == 11


async def test_concurrent_writers_count_loser_bytes(
    cache: DiskCache, registry: CollectorRegistry
) -> None:
    path, _ = cache.open_entry(key())
    first, second = cache.new_entry(path), cache.new_entry(path)
    await first.write(b"12345")
    await second.write(b"123")
    first.commit()
    second.commit()
    assert sample(registry, "gitaly_diskcache_bytes_loser_total") == 5
    with open(path, "rb") as f:
        assert f.read() == b"123"


async def test_leased_ends_the_lease_on_error_and_cancellation(
    cache: DiskCache, storage: str
) -> None:
    pending_while_running: list[str] = []

    async def failing_handler() -> None:
        async with cache.leased(REPO, METHOD):
            pending_while_running.extend(os.listdir(state(storage, "pending")))
            raise RuntimeError("the handler failed")

    with pytest.raises(RuntimeError):
        await failing_handler()
    assert len(pending_while_running) == 1
    assert os.listdir(state(storage, "pending")) == []
    after_error = generation(storage)

    with trio.CancelScope() as scope:
        async with cache.leased(REPO, METHOD):
            scope.cancel()
            await trio.sleep_forever()
    assert os.listdir(state(storage, "pending")) == []
    assert generation(storage) != after_error


@pytest.mark.parametrize(
    "repository",
    [None, shared_pb2.Repository(storage_name="nope", relative_path="a.git")],
    ids=["no-repository", "unknown-storage"],
)
async def test_leased_runs_the_block_when_no_lease_can_be_taken(
    cache: DiskCache, registry: CollectorRegistry, repository: shared_pb2.Repository | None
) -> None:
    ran = False
    async with cache.leased(repository, METHOD):
        ran = True
    assert ran
    assert sample(registry, "gitaly_cacheinvalidator_error_total", method=METHOD) == 1

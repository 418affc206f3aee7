"""`[[concurrency]]` and `[pack_objects_limiting]` on a real server, with grpcio clients.

The calls are SSHUploadPack streams held open by the test (held_calls.py), so "running",
"queued" and "refused" are states of real calls, not of timing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import grpc
import msgspec
import pytest
import trio

from tests.helpers import Client, error_detail, repository
from tests.limits.held_calls import HeldCall, gauge, until_queued
from tests.repos import rich_repository
from trio_gitaly.config import Config
from trio_gitaly.config_limits import ConcurrencyConfig, PackObjectsLimitingConfig
from trio_gitaly.config_values import Duration
from trio_gitaly.limits.limiter import MAX_QUEUE_SIZE_MESSAGE, MAX_QUEUE_TIME_MESSAGE
from trio_gitaly.nursery_tree import RunningServer, serve
from trio_gitaly.rpc.gen.gitaly import commit_pb2, errors_pb2, repository_pb2

UPLOAD_PACK = "/gitaly.SSHService/SSHUploadPack"
REMOTE = [("remote_ip", "203.0.113.9")]


def limited(config: Config, *, limit: int, queue: int, wait_s: float = 0.0) -> Config:
    entry = ConcurrencyConfig(
        rpc=UPLOAD_PACK, max_per_repo=limit, max_queue_size=queue, max_queue_wait=Duration(wait_s)
    )
    return msgspec.structs.replace(config, concurrency=(entry,))


async def start(nursery: trio.Nursery, config: Config) -> RunningServer:
    storage = config.storage[0].path
    for name in ("a.git", "b.git"):
        rich_repository(os.path.join(storage, name))
    running: RunningServer = await nursery.start(serve, config)
    return running


def tcp(running: RunningServer, connect: Callable[..., Client]) -> Client:
    return connect(running.addresses["tcp"][0])


async def release_all(*calls: HeldCall) -> None:
    for call in calls:
        call.release()
    for call in calls:
        await call.wait_finished()


async def test_limit_one_queue_one_refuses_the_third_call_at_once(
    nursery: trio.Nursery, config: Config, connect: Callable[..., Client]
) -> None:
    running = await start(nursery, limited(config, limit=1, queue=1))
    client = tcp(running, connect)
    first = HeldCall(client, "a.git")
    await first.wait_admitted()
    second = HeldCall(client, "a.git")
    await until_queued(running.metrics.registry, at_least=1)
    third = HeldCall(client, "a.git")
    await third.wait_finished()  # refused while the first still runs
    assert not second.admitted and not second.finished.is_set()
    assert third.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert third.error is not None and third.error.details() == MAX_QUEUE_SIZE_MESSAGE
    detail = error_detail(third.error, errors_pb2.LimitError)
    assert detail.error_message == MAX_QUEUE_SIZE_MESSAGE
    assert detail.retry_after.seconds == 0 and detail.retry_after.nanos == 0
    # Another repository is not behind a.git's queue.
    other = HeldCall(client, "b.git")
    await other.wait_admitted()
    first.release()
    await second.wait_admitted()
    await release_all(second, other)
    await first.wait_finished()
    assert first.error is None and second.error is None and other.error is None
    registry = running.metrics.registry
    dropped = registry.get_sample_value(
        "gitaly_requests_dropped_total",
        {
            "system": "gitaly",
            "grpc_service": "gitaly.SSHService",
            "grpc_method": "SSHUploadPack",
            "reason": "max_size",
        },
    )
    assert dropped == 1
    assert gauge(registry, "gitaly_concurrency_limiting_in_progress") == 0
    assert gauge(registry, "gitaly_concurrency_limiting_queued") == 0


async def test_queue_wait_expiry_refuses_with_the_time_message(
    nursery: trio.Nursery, config: Config, connect: Callable[..., Client]
) -> None:
    running = await start(nursery, limited(config, limit=1, queue=5, wait_s=0.3))
    client = tcp(running, connect)
    first = HeldCall(client, "a.git")
    await first.wait_admitted()
    waiting = HeldCall(client, "a.git")
    await waiting.wait_finished()
    assert waiting.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert waiting.error is not None and waiting.error.details() == MAX_QUEUE_TIME_MESSAGE
    assert error_detail(waiting.error, errors_pb2.LimitError).error_message == (
        MAX_QUEUE_TIME_MESSAGE
    )
    await release_all(first)
    assert first.error is None


async def test_waiters_are_admitted_first_come_first_served(
    nursery: trio.Nursery, config: Config, connect: Callable[..., Client]
) -> None:
    running = await start(nursery, limited(config, limit=1, queue=3))
    client = tcp(running, connect)
    first = HeldCall(client, "a.git")
    await first.wait_admitted()
    queued = []
    for expected in (1, 2, 3):
        queued.append(HeldCall(client, "a.git"))
        await until_queued(running.metrics.registry, at_least=expected)
    current = first
    for i, call in enumerate(queued):
        current.release()
        await call.wait_admitted()
        await current.wait_finished()
        # Only the one that came next got in; the later ones still wait.
        assert [c.admitted for c in queued] == [j <= i for j in range(len(queued))]
        current = call
    await release_all(current)
    assert all(call.error is None for call in (first, *queued))


async def test_a_cancelled_waiter_frees_its_queue_slot(
    nursery: trio.Nursery, config: Config, connect: Callable[..., Client]
) -> None:
    running = await start(nursery, limited(config, limit=1, queue=1))
    client = tcp(running, connect)
    first = HeldCall(client, "a.git")
    await first.wait_admitted()
    quitter = HeldCall(client, "a.git")
    registry = running.metrics.registry
    await until_queued(registry, at_least=1)
    quitter.cancel()
    await quitter.wait_finished()
    await until_queued(registry, at_most=0)
    # The place the quitter held in the queue is free again: this one waits, not refused.
    successor = HeldCall(client, "a.git")
    await until_queued(registry, at_least=1)
    first.release()
    await successor.wait_admitted()
    await release_all(successor)
    assert quitter.code() == grpc.StatusCode.CANCELLED and successor.error is None


async def test_refusals_are_in_the_access_log_with_limit_fields(
    nursery: trio.Nursery,
    config: Config,
    connect: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = await start(nursery, limited(config, limit=1, queue=1))
    client = tcp(running, connect)
    first = HeldCall(client, "a.git")
    await first.wait_admitted()
    second = HeldCall(client, "a.git")
    await until_queued(running.metrics.registry, at_least=1)
    with caplog.at_level(logging.INFO, logger="trio_gitaly.grpc"):
        third = HeldCall(client, "a.git")
        await third.wait_finished()
        await release_all(first, second)
    fields = [r.__dict__["fields"] for r in caplog.records if r.name == "trio_gitaly.grpc"]
    refused = [f for f in fields if f["grpc.code"] == "ResourceExhausted"]
    assert len(refused) == 1
    assert refused[0]["limit.limiting_type"] == "per-rpc"
    assert refused[0]["limit.limiting_key"] == "a.git"
    assert refused[0]["limit.concurrency_dropped"] == "max_size"
    assert refused[0]["limit.concurrency_queue_length"] == 1
    admitted = [f for f in fields if f["grpc.code"] == "OK"]
    assert len(admitted) == 2
    assert all(f["limit.limiting_type"] == "per-rpc" for f in admitted)
    assert {f["limit.concurrency_in_progress"] for f in admitted} == {1}


async def test_pack_objects_limit_is_per_client_ip_and_spares_loopback(
    nursery: trio.Nursery, config: Config, connect: Callable[..., Client]
) -> None:
    section = PackObjectsLimitingConfig(max_concurrency=1, max_queue_length=1)
    running = await start(nursery, msgspec.structs.replace(config, pack_objects_limiting=section))
    client = tcp(running, connect)
    registry = running.metrics.registry
    first = HeldCall(client, "a.git", REMOTE)
    await first.wait_admitted()
    second = HeldCall(client, "b.git", REMOTE)  # another repository, the same client
    with trio.fail_after(10):
        while (registry.get_sample_value("gitaly_pack_objects_queued") or 0) < 1:
            await trio.sleep(0.01)
    third = HeldCall(client, "b.git", [("remote_ip", "203.0.113.9:41000")])
    await third.wait_finished()
    assert third.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert third.error is not None and third.error.details() == MAX_QUEUE_SIZE_MESSAGE
    # Another client, and local ones, are not held up by 203.0.113.9's queue.
    elsewhere = HeldCall(client, "a.git", [("remote_ip", "198.51.100.4")])
    local = [HeldCall(client, "a.git", [("remote_ip", "127.0.0.1")]) for _ in range(3)]
    unnamed = HeldCall(client, "a.git")
    for call in (elsewhere, *local, unnamed):
        await call.wait_admitted()
    first.release()
    await second.wait_admitted()
    await release_all(first, second, elsewhere, *local, unnamed)
    assert (
        registry.get_sample_value("gitaly_pack_objects_dropped_total", {"reason": "max_size"}) == 1
    )
    assert registry.get_sample_value("gitaly_pack_objects_in_progress") == 0


async def test_adaptive_limit_climbs_to_its_maximum_and_admits_waiters(
    nursery: trio.Nursery, config: Config, connect: Callable[..., Client]
) -> None:
    entry = ConcurrencyConfig(
        rpc=UPLOAD_PACK, adaptive=True, initial_limit=1, min_limit=1, max_limit=3
    )
    interval = msgspec.structs.replace(config.adaptive_limiting, calibration_interval=Duration(0.2))
    running = await start(
        nursery,
        msgspec.structs.replace(config, concurrency=(entry,), adaptive_limiting=interval),
    )
    client = tcp(running, connect)
    registry = running.metrics.registry
    name = f"perRPC{UPLOAD_PACK}"

    def current() -> float:
        value = registry.get_sample_value(
            "gitaly_concurrency_limiting_current_limit", {"limit": name}
        )
        return 0.0 if value is None else value

    calls = [HeldCall(client, "a.git") for _ in range(3)]
    # Without cgroups no watcher reports pressure: +1 per round, up to the maximum, and
    # the calls that waited get in as the limit grows, without any of them ending.
    for call in calls:
        await call.wait_admitted()
    with trio.fail_after(10):
        while current() < 3:
            await trio.sleep(0.05)
    await trio.sleep(0.5)  # more rounds: it stays at the maximum
    assert current() == 3
    await release_all(*calls)
    assert all(call.error is None for call in calls)


async def test_unary_calls_run_inside_their_slot_and_unlimited_ones_are_untouched(
    nursery: trio.Nursery,
    config: Config,
    connect: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = ConcurrencyConfig(rpc="/gitaly.CommitService/FindCommit", max_per_repo=1)
    running = await start(nursery, msgspec.structs.replace(config, concurrency=(entry,)))
    client = tcp(running, connect)
    repo = repository("a.git")
    with caplog.at_level(logging.INFO, logger="trio_gitaly.grpc"):
        for _ in range(3):  # one after another: each gets the single slot
            found = await client.unary(
                "/gitaly.CommitService/FindCommit",
                commit_pb2.FindCommitRequest(repository=repo, revision=b"HEAD"),
                commit_pb2.FindCommitResponse,
            )
            assert found.commit.id
        await client.unary(
            "/gitaly.RepositoryService/RepositoryExists",
            repository_pb2.RepositoryExistsRequest(repository=repo),
            repository_pb2.RepositoryExistsResponse,
        )
    fields = [r.__dict__["fields"] for r in caplog.records if r.name == "trio_gitaly.grpc"]
    limited_lines = [f for f in fields if f["grpc.method"] == "FindCommit"]
    assert len(limited_lines) == 3
    assert all(f["limit.limiting_key"] == "a.git" for f in limited_lines)
    [other] = [f for f in fields if f["grpc.method"] == "RepositoryExists"]
    assert not any(key.startswith("limit.") for key in other)
    labels = {
        "system": "gitaly",
        "grpc_service": "gitaly.CommitService",
        "grpc_method": "FindCommit",
    }
    registry = running.metrics.registry
    assert (
        registry.get_sample_value("gitaly_concurrency_limiting_acquiring_seconds_count", labels)
        == 3
    )
    assert registry.get_sample_value("gitaly_concurrency_limiting_in_progress", labels) == 0

"""The keyed limiter and its semaphore, driven directly by trio tasks.

The RPC-level behaviour (codes, details, real clients) is in test_concurrency_rpc.py;
these pin down the queueing rules exactly, including resizes while calls run.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.limits.adaptive import AdaptiveLimit
from trio_gitaly.limits.limiter import (
    MAX_QUEUE_SIZE_MESSAGE,
    MAX_QUEUE_TIME_MESSAGE,
    PER_RPC,
    ConcurrencyLimiter,
)
from trio_gitaly.limits.semaphore import ResizableSemaphore
from trio_gitaly.limits.server_limits import pack_objects_key
from trio_gitaly.rpc.gen.gitaly import errors_pb2


class Monitor:
    def __init__(self) -> None:
        self.queue = 0
        self.running = 0
        self.drops: list[str] = []

    def queued(self) -> None:
        self.queue += 1

    def dequeued(self) -> None:
        self.queue -= 1

    def entered(self, acquire_s: float) -> None:
        self.running += 1

    def exited(self) -> None:
        self.running -= 1

    def dropped(self, reason: str) -> None:
        self.drops.append(reason)


def limiter(limit: int, queue: int, wait_s: float = 0.0) -> tuple[ConcurrencyLimiter, Monitor]:
    monitor = Monitor()
    return (
        ConcurrencyLimiter(
            AdaptiveLimit("test", limit),
            max_queue_length=queue,
            max_queue_wait_s=wait_s,
            monitor=monitor,
            limiting_type=PER_RPC,
        ),
        monitor,
    )


class Holder:
    """A task that holds a slot of `key` until told to let go."""

    def __init__(self, lim: ConcurrencyLimiter, key: str, log: list[str], name: str) -> None:
        self.lim, self.key, self.log, self.name = lim, key, log, name
        self.admitted = trio.Event()
        self.done = trio.Event()
        self.error: GitalyError | None = None
        self.fields: dict[str, Any] = {}

    async def run(self) -> None:
        try:
            async with self.lim.admitted(self.key, self.fields):
                self.log.append(self.name)
                self.admitted.set()
                await self.done.wait()
        except GitalyError as error:
            self.error = error


async def test_semaphore_is_fifo_and_resizes_without_taking_tokens_back() -> None:
    sem = ResizableSemaphore(2)
    assert sem.try_acquire() and sem.try_acquire()
    assert not sem.try_acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        await sem.acquire()
        order.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(wait, i)
            await trio.testing.wait_all_tasks_blocked()
        assert sem.waiting == 3
        sem.resize(1)  # two held, size one: the next release admits nobody
        sem.release()
        await trio.testing.wait_all_tasks_blocked()
        assert order == [] and sem.held == 1
        sem.release()
        await trio.testing.wait_all_tasks_blocked()
        assert order == [0]
        sem.resize(2)  # room for one more: the first in line
        await trio.testing.wait_all_tasks_blocked()
        assert order == [0, 1]
        sem.resize(5)  # more room than waiters: the last one gets in, nothing else changes
        await trio.testing.wait_all_tasks_blocked()
        assert order == [0, 1, 2] and sem.held == 3 and sem.waiting == 0


async def test_full_queue_refuses_at_once_with_a_limit_error() -> None:
    lim, monitor = limiter(limit=1, queue=1)
    log: list[str] = []
    first, second, third = (Holder(lim, "repo", log, n) for n in ("a", "b", "c"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.run)
        await first.admitted.wait()
        nursery.start_soon(second.run)
        await trio.testing.wait_all_tasks_blocked()
        await third.run()  # returns at once: refused
        assert third.error is not None
        assert third.error.code == StatusCode.RESOURCE_EXHAUSTED
        assert third.error.message == MAX_QUEUE_SIZE_MESSAGE
        detail = third.error.detail
        assert isinstance(detail, errors_pb2.LimitError)
        assert detail.error_message == MAX_QUEUE_SIZE_MESSAGE
        assert detail.retry_after.ToTimedelta().total_seconds() == 0
        assert third.fields["limit.concurrency_dropped"] == "max_size"
        assert third.fields["limit.limiting_key"] == "repo"
        # Another key has slots of its own.
        other = Holder(lim, "other", log, "o")
        nursery.start_soon(other.run)
        await other.admitted.wait()
        assert log == ["a", "o"] and monitor.drops == ["max_size"]
        first.done.set()
        await second.admitted.wait()
        second.done.set()
        other.done.set()
    assert lim.keys == 0  # unused keys are dropped
    assert monitor.running == 0 and monitor.queue == 0


async def test_queue_wait_expiry_refuses_with_the_time_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lim, monitor = limiter(limit=1, queue=5, wait_s=2.0)
    log: list[str] = []
    first, second = Holder(lim, "repo", log, "a"), Holder(lim, "repo", log, "b")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.run)
        await first.admitted.wait()
        start = trio.current_time()
        await second.run()
        assert trio.current_time() - start == pytest.approx(2.0)
        assert second.error is not None and second.error.message == MAX_QUEUE_TIME_MESSAGE
        assert second.fields["limit.concurrency_dropped"] == "max_time"
        first.done.set()
    assert monitor.drops == ["max_time"] and log == ["a"]


async def test_waiters_are_admitted_in_arrival_order_and_cancelled_ones_leave() -> None:
    lim, monitor = limiter(limit=1, queue=3)
    log: list[str] = []
    holders = [Holder(lim, "repo", log, name) for name in "abcd"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(holders[0].run)
        await holders[0].admitted.wait()
        cancel_b = trio.CancelScope()

        async def b_run() -> None:
            with cancel_b:
                await holders[1].run()

        nursery.start_soon(b_run)
        for holder in holders[2:]:
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(holder.run)
        await trio.testing.wait_all_tasks_blocked()
        assert monitor.queue == 3
        cancel_b.cancel()  # b gives up while queued: its place is free again
        await trio.testing.wait_all_tasks_blocked()
        assert monitor.queue == 2 and monitor.drops == ["other"]
        late = Holder(lim, "repo", log, "e")
        nursery.start_soon(late.run)  # fits: b's place was given back
        await trio.testing.wait_all_tasks_blocked()
        assert late.error is None
        for holder in (holders[0], holders[2], holders[3]):
            holder.done.set()
            await trio.testing.wait_all_tasks_blocked()
        late.done.set()
    assert log == ["a", "c", "d", "e"]


async def test_a_shrinking_limit_keeps_admitted_calls_and_a_growing_one_admits_waiters() -> None:
    lim, monitor = limiter(limit=2, queue=10)
    log: list[str] = []
    holders = [Holder(lim, "repo", log, name) for name in "abcd"]
    async with trio.open_nursery() as nursery:
        for holder in holders:
            nursery.start_soon(holder.run)
            await trio.testing.wait_all_tasks_blocked()
        assert log == ["a", "b"]
        lim.limit.update(1)
        holders[0].done.set()
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["a", "b"] and monitor.running == 1  # b still runs; no room yet
        lim.limit.update(3)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(log[2:]) == ["c", "d"]
        for holder in holders[1:]:
            holder.done.set()


async def test_zero_limit_means_unlimited() -> None:
    lim, _ = limiter(limit=0, queue=1)
    log: list[str] = []
    holders = [Holder(lim, "repo", log, str(i)) for i in range(5)]
    async with trio.open_nursery() as nursery:
        for holder in holders:
            nursery.start_soon(holder.run)
        await trio.testing.wait_all_tasks_blocked()
        assert len(log) == 5 and lim.keys == 0
        for holder in holders:
            holder.done.set()


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:52000", "203.0.113.7"),
        ("[2001:db8::1]:22", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("127.0.0.1", None),
        ("127.0.0.1:1234", None),
        ("::1", None),
        ("", None),
        ("not-an-ip", None),
    ],
)
def test_pack_objects_key_skips_loopback_and_garbage(address: str, key: str | None) -> None:
    assert pack_objects_key(address) == key

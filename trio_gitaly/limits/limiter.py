"""The keyed concurrency limiter behind `[[concurrency]]` and `[pack_objects_limiting]`.

Each key (a repository's relative path, a client IP) gets two semaphores while it is in
use: one with `limit` tokens for running calls, and one with `limit + max_queue_length`
tokens that running and waiting calls both hold. A call that cannot take the second at
once is refused at once ("maximum queue size reached"); one that waits longer than
`max_queue_wait` for the first is refused then ("maximum time in concurrency queue
reached"). Both are RESOURCE_EXHAUSTED with a `gitaly.LimitError` detail whose
retry_after is zero: Gitaly does not tell clients to retry.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Protocol

import trio
from google.protobuf import duration_pb2

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.limits.adaptive import AdaptiveLimit
from trio_gitaly.limits.semaphore import ResizableSemaphore
from trio_gitaly.rpc.gen.gitaly import errors_pb2

MAX_QUEUE_SIZE_MESSAGE: Final = "maximum queue size reached"
MAX_QUEUE_TIME_MESSAGE: Final = "maximum time in concurrency queue reached"

#: The `limit.limiting_type` log field of each limiter.
PER_RPC: Final = "per-rpc"
PACK_OBJECTS: Final = "pack-objects"


class Monitor(Protocol):
    """Where a limiter reports: gauges, the acquire-time histogram, dropped requests."""

    def queued(self) -> None: ...
    def dequeued(self) -> None: ...
    def entered(self, acquire_s: float) -> None: ...
    def exited(self) -> None: ...
    def dropped(self, reason: str) -> None: ...


def limit_error(message: str) -> GitalyError:
    """The error a refused call ends with."""
    return GitalyError(
        StatusCode.RESOURCE_EXHAUSTED,
        message,
        detail=errors_pb2.LimitError(error_message=message, retry_after=duration_pb2.Duration()),
    )


@dataclass(eq=False)
class _Bucket:
    running: ResizableSemaphore
    queue: ResizableSemaphore
    users: int = 0


class ConcurrencyLimiter:
    """Per-key limits on concurrent calls, with a bounded FIFO queue in front.

    Args:
        limit: running calls per key; 0 (or less) means unlimited. Its updates resize
            every live key's semaphores without dropping admitted calls.
        max_queue_length: calls that may wait per key beyond those running.
        max_queue_wait_s: how long one may wait (0: no bound).
        limiting_type: `PER_RPC` or `PACK_OBJECTS`, for the log fields.
    """

    def __init__(
        self,
        limit: AdaptiveLimit,
        *,
        max_queue_length: int,
        max_queue_wait_s: float,
        monitor: Monitor,
        limiting_type: str,
    ) -> None:
        self.limit = limit
        self.max_queue_length = max_queue_length
        self.max_queue_wait_s = max_queue_wait_s or math.inf
        self.monitor = monitor
        self.limiting_type = limiting_type
        self._buckets: dict[str, _Bucket] = {}
        limit.after_update(self._resize)

    def _resize(self, value: int) -> None:
        for bucket in self._buckets.values():
            bucket.running.resize(value)
            bucket.queue.resize(value + self.max_queue_length)

    @property
    def keys(self) -> int:
        """Keys with calls running or waiting (their buckets are dropped when unused)."""
        return len(self._buckets)

    def queue_length(self, key: str) -> int:
        """Calls of `key` waiting for a slot right now."""
        bucket = self._buckets.get(key)
        return bucket.running.waiting if bucket else 0

    def occupancy(self) -> tuple[int, int]:
        """(running, queued) calls over every key right now."""
        running = queued = 0
        for bucket in self._buckets.values():
            running += bucket.running.held
            queued += bucket.running.waiting
        return running, queued

    @asynccontextmanager
    async def admitted(self, key: str, fields: MutableMapping[str, Any]) -> AsyncIterator[None]:
        """Hold one of `key`'s slots for the body of the `async with`.

        Records Gitaly's `limit.*` log fields in `fields`.

        Raises:
            GitalyError: RESOURCE_EXHAUSTED when the queue is full or the wait too long.

        Cancellation: a call cancelled while queued leaves the queue and frees its place.
        """
        if self.limit.current <= 0:
            yield
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            current = self.limit.current
            bucket = _Bucket(
                ResizableSemaphore(current), ResizableSemaphore(current + self.max_queue_length)
            )
            self._buckets[key] = bucket
        bucket.users += 1
        try:
            await self._acquire(bucket, key, fields)
            try:
                yield
            finally:
                bucket.running.release()
                bucket.queue.release()
                self.monitor.exited()
        finally:
            bucket.users -= 1
            if not bucket.users:
                del self._buckets[key]

    async def _acquire(self, bucket: _Bucket, key: str, fields: MutableMapping[str, Any]) -> None:
        start = trio.current_time()
        fields["limit.limiting_type"] = self.limiting_type
        fields["limit.limiting_key"] = key
        fields["limit.concurrency_queue_length"] = bucket.running.waiting
        if not bucket.queue.try_acquire():
            self._drop(bucket, fields, start, "max_size")
            raise limit_error(MAX_QUEUE_SIZE_MESSAGE)
        self.monitor.queued()
        try:
            with trio.move_on_after(self.max_queue_wait_s):
                await bucket.running.acquire()
                waited = trio.current_time() - start
                self.monitor.entered(waited)
                fields["limit.concurrency_queue_ms"] = int(waited * 1000)
                fields["limit.concurrency_in_progress"] = bucket.running.held
                return
        except BaseException:
            # The client went away while queued: its place goes to the next in line.
            bucket.queue.release()
            self._drop(bucket, fields, start, "other")
            raise
        finally:
            self.monitor.dequeued()
        bucket.queue.release()
        self._drop(bucket, fields, start, "max_time")
        raise limit_error(MAX_QUEUE_TIME_MESSAGE)

    def _drop(
        self, bucket: _Bucket, fields: MutableMapping[str, Any], start: float, reason: str
    ) -> None:
        fields["limit.concurrency_queue_length"] = bucket.running.waiting
        fields["limit.concurrency_in_progress"] = bucket.running.held
        fields["limit.concurrency_dropped"] = reason
        fields["limit.concurrency_queue_ms"] = int((trio.current_time() - start) * 1000)
        self.monitor.dropped(reason)

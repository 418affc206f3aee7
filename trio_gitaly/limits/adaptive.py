"""Adaptive limits and the calibration worker that moves them (AIMD).

Every calibration interval the worker polls each watcher, then moves every adaptive
limit together: one up (to its maximum) when no watcher reported pressure, halved (to
its minimum) when any did; several backoff events in one round still halve once. A
watcher that errors counts as no pressure; one that times out `MAX_WATCHER_TIMEOUTS`
rounds in a row counts as pressure, since a host too loaded to read its own stats is
loaded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge

from trio_gitaly import tree_state

LOG = logging.getLogger("trio_gitaly.limits")

#: Consecutive poll timeouts of one watcher that count as a backoff event.
MAX_WATCHER_TIMEOUTS: Final = 5
#: How much a backoff event keeps of each limit.
BACKOFF_FACTOR: Final = 0.5


class AdaptiveLimit:
    """A named limit whose value may change; limiters resize when it does.

    A static limit is one whose minimum and maximum equal its initial value: the
    calibration worker never moves it.
    """

    def __init__(
        self, name: str, initial: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> None:
        self.name = name
        self.initial = initial
        self.minimum = initial if minimum is None else minimum
        self.maximum = initial if maximum is None else maximum
        self.current = initial
        self._listeners: list[Callable[[int], None]] = []

    @property
    def adaptive(self) -> bool:
        """Whether calibration may move this limit."""
        return self.minimum != self.maximum

    def after_update(self, listener: Callable[[int], None]) -> None:
        """Call `listener(new_value)` after every update."""
        self._listeners.append(listener)

    def update(self, value: int) -> None:
        """Set the current value and tell the listeners."""
        self.current = value
        for listener in self._listeners:
            listener(value)


@dataclass(frozen=True)
class BackoffEvent:
    """What a watcher saw in one poll: whether to back off, and why."""

    watcher: str
    backoff: bool
    reason: str = ""
    stats: Mapping[str, Any] = field(default_factory=dict)


class Watcher(Protocol):
    """A source of pressure signals (cgroup CPU throttling, memory)."""

    name: str

    async def poll(self) -> BackoffEvent:
        """Look at the resource once.

        Cancellation: raises Cancelled (the calibration round's deadline).
        """
        ...


class CalibrationMetrics:
    """gitaly_concurrency_limiting_{current_limit,backoff_events_total,watcher_errors_total}."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.current_limit = Gauge(
            "gitaly_concurrency_limiting_current_limit",
            "The current value of an adaptive concurrency limit.",
            ["limit"],
            registry=registry,
        )
        self.backoff_events = Counter(
            "gitaly_concurrency_limiting_backoff_events",
            "Backoff events, by the watcher that reported them.",
            ["watcher"],
            registry=registry,
        )
        self.watcher_errors = Counter(
            "gitaly_concurrency_limiting_watcher_errors",
            "Failed polls, by watcher.",
            ["watcher"],
            registry=registry,
        )


class Calibrator:
    """AIMD over `limits`, driven by `watchers` (the state between rounds)."""

    def __init__(
        self,
        limits: Sequence[AdaptiveLimit],
        watchers: Sequence[Watcher],
        metrics: CalibrationMetrics,
        *,
        interval_s: float,
    ) -> None:
        self.limits = tuple(limits)
        self.watchers = tuple(watchers)
        self.metrics = metrics
        self.interval_s = interval_s
        self._timeouts = {watcher.name: 0 for watcher in self.watchers}

    def reset(self) -> None:
        """Put every limit back to its initial value (what starting calibration does)."""
        for limit in self.limits:
            self._set(limit, limit.initial)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Calibrate every interval until cancelled (a worker of the tree).

        Cancellation: stops between or during polls; limits keep their last values.
        """
        self.reset()
        task_status.started()
        tree_state.worker_next(self.interval_s)
        while True:
            await trio.sleep(self.interval_s)
            await self.calibrate()
            tree_state.worker_ran(next_in_s=self.interval_s)

    async def calibrate(self) -> None:
        """One round: poll the watchers, then move every limit once.

        Cancellation: raises Cancelled; limits are only moved after all polls.
        """
        event = await self._poll()
        for limit in self.limits:
            previous = limit.current
            if event is None:
                self._set(limit, min(previous + 1, limit.maximum))
                LOG.debug(
                    "Additive increase",
                    extra={
                        "fields": {
                            "limit": limit.name,
                            "previous_limit": previous,
                            "new_limit": limit.current,
                        }
                    },
                )
                continue
            self._set(limit, max(math.floor(previous * BACKOFF_FACTOR), limit.minimum))
            fields: dict[str, Any] = {
                "limit": limit.name,
                "previous_limit": previous,
                "new_limit": limit.current,
                "watcher": event.watcher,
                "reason": event.reason,
            }
            fields.update({f"stats.{key}": value for key, value in event.stats.items()})
            LOG.info("Multiplicative decrease", extra={"fields": fields})

    async def _poll(self) -> BackoffEvent | None:
        """The round's backoff event (the last watcher's that fired), or None."""
        event: BackoffEvent | None = None
        # One deadline for the whole round: a slow watcher must not delay the next round.
        deadline = trio.current_time() + self.interval_s
        for watcher in self.watchers:
            try:
                with trio.move_on_at(deadline) as scope:
                    polled = await watcher.poll()
            except Exception as exc:
                self._failed(watcher, str(exc))
                continue
            if scope.cancelled_caught:
                # The round is over: the watchers after this one are not asked.
                return self._timed_out(watcher) or event
            self._timeouts[watcher.name] = 0
            if polled.backoff:
                self.metrics.backoff_events.labels(watcher.name).inc()
                event = polled
        return event

    def _failed(self, watcher: Watcher, error: str) -> None:
        self.metrics.watcher_errors.labels(watcher.name).inc()
        LOG.error(
            "poll from resource watcher failed",
            extra={"fields": {"watcher": watcher.name, "error": error}},
        )

    def _timed_out(self, watcher: Watcher) -> BackoffEvent | None:
        self._failed(watcher, "context deadline exceeded")
        self._timeouts[watcher.name] += 1
        count = self._timeouts[watcher.name]
        if count < MAX_WATCHER_TIMEOUTS:
            return None
        self._timeouts[watcher.name] = 0
        self.metrics.backoff_events.labels(watcher.name).inc()
        return BackoffEvent(watcher.name, True, f"{count} consecutive polling timeout errors")

    def _set(self, limit: AdaptiveLimit, value: int) -> None:
        limit.update(value)
        self.metrics.current_limit.labels(limit.name).set(value)

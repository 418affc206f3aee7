"""Readiness and stopping: the state the tree's nodes share while it starts and stops."""

from __future__ import annotations

import math

import trio


class Lifecycle:
    """Where the server is in its life: starting, ready, stopping.

    The tree sets `ready` once every listener is bound and git was detected;
    `begin_stop` flips readiness off, fixes the grace deadline and wakes every node
    that waits on `stopping`.
    """

    def __init__(self) -> None:
        self.ready = False
        self.stopping = trio.Event()
        self.grace_deadline = math.inf

    def begin_stop(self, grace_s: float) -> None:
        """Start a graceful stop: in-flight work may run for `grace_s` more seconds."""
        if self.stopping.is_set():
            return
        self.ready = False
        self.grace_deadline = trio.current_time() + grace_s
        self.stopping.set()

"""The live nursery tree: what runs right now, for `/-/events` and `trio-gitaly top`.

The tree registers itself as it runs, so what it shows cannot drift from what runs:
`nursery_tree._node` runs each child of the tree inside `node(name)`, which adds a Node
under the node of the task that started it and removes it when the child ends, however
it ends. The current node is a contextvar, and trio copies the spawner's context into
every task it starts, so nesting follows the nurseries without anyone passing a parent.
Connections and RPCs add themselves where they run (rpc/connection.py); periodic
workers report their runs with `worker_ran` and `worker_next`.

An RPC costs one Node, one dict insert and one delete: no lock (everything runs in the
trio thread) and no formatting. What a node shows beyond its name, state and times is
read only when a snapshot is taken (`Node.details`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Final, final

import trio

# Kinds of node: what the snapshot and `top` treat specially.
NODE: Final = "node"
LISTENER: Final = "listener"
CONNECTION: Final = "connection"
RPC: Final = "rpc"
REQUEST: Final = "request"
WORKER: Final = "worker"

# States: a child is starting until it reports started (nursery.start), then running;
# draining once it stopped taking new work and waits for what it has.
STARTING: Final = "starting"
RUNNING: Final = "running"
DRAINING: Final = "draining"

#: Reads a node's subject at snapshot time: its fields for the snapshot's `info`.
Describe = Callable[[Any], Mapping[str, object]]

_CURRENT: ContextVar[Node | None] = ContextVar("trio_gitaly_tree_node", default=None)


@final
class Node:
    """One running part of the tree; `children` are the parts it started, oldest first.

    Attributes:
        since: wall-clock time (epoch seconds) the node entered its current state.
        started: wall-clock time it began.
        last_run, next_run: a worker's last finished run and its next one (epoch
            seconds), None while unknown.
    """

    __slots__ = (
        "children",
        "describe",
        "kind",
        "last_run",
        "name",
        "next_run",
        "since",
        "started",
        "state",
        "subject",
    )

    def __init__(
        self,
        name: str,
        kind: str = NODE,
        subject: object = None,
        describe: Describe | None = None,
        *,
        state: str = STARTING,
    ) -> None:
        self.name = name
        self.kind = kind
        self.state = state
        self.started = self.since = time.time()
        self.children: dict[int, Node] = {}
        self.subject = subject
        self.describe = describe
        self.last_run: float | None = None
        self.next_run: float | None = None

    def add(
        self, name: str, kind: str, subject: object = None, describe: Describe | None = None
    ) -> Node:
        """Add a running child and return it; the caller must `remove` it when it ends.

        The cheap path for what starts often (RPCs): no contextvar, no context manager.
        """
        child = Node(name, kind, subject, describe, state=RUNNING)
        self.children[id(child)] = child
        return child

    def remove(self, child: Node) -> None:
        """Forget a child (one that is not there is fine)."""
        self.children.pop(id(child), None)

    def mark(self, state: str) -> None:
        """Enter `state` (since now), unless already in it."""
        if state != self.state:
            self.state = state
            self.since = time.time()

    def details(self) -> Mapping[str, object]:
        """The node's own fields (a connection's peer, an RPC's method), read now."""
        if self.describe is None:
            return {}
        return self.describe(self.subject)

    def watch_started(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """`kwargs` for the node's function, reporting started on this node too.

        Without a `task_status` the function was started with `start_soon`: it runs now.
        """
        task_status = kwargs.get("task_status")
        if task_status is None:
            self.mark(RUNNING)
            return kwargs
        return {**kwargs, "task_status": _Reporting(task_status, self)}


class _Reporting:
    """A task status that marks its node running when the task reports started."""

    def __init__(self, inner: trio.TaskStatus[Any], node: Node) -> None:
        self._inner = inner
        self._node = node

    def started(self, value: Any = None) -> None:
        self._node.mark(RUNNING)
        self._inner.started(value)


@final
class TreeState:
    """One tree's registry: its root, and the context its children register under."""

    def __init__(self, name: str = "root") -> None:
        self.root = Node(name)

    @contextlib.contextmanager
    def entered(self) -> Iterator[Node]:
        """Make the root the current node of this task (and of the tasks it starts)."""
        token = _CURRENT.set(self.root)
        try:
            yield self.root
        finally:
            _CURRENT.reset(token)


@contextlib.contextmanager
def attached(child: Node) -> Iterator[Node]:
    """Put `child` under the current node and make it current for the block.

    Outside a tree (a component run on its own, in tests) the child stays detached and
    nothing is registered. The child leaves its parent when the block ends, however it
    ends (cancellation included).
    """
    parent = _CURRENT.get()
    if parent is not None:
        parent.children[id(child)] = child
    token = _CURRENT.set(child)
    try:
        yield child
    finally:
        _CURRENT.reset(token)
        if parent is not None:
            parent.remove(child)


def node(
    name: str,
    *,
    kind: str = NODE,
    subject: object = None,
    describe: Describe | None = None,
    state: str = STARTING,
) -> contextlib.AbstractContextManager[Node]:
    """A new node under the current one, current for the `with` block (see `attached`)."""
    return attached(Node(name, kind, subject, describe, state=state))


def current() -> Node | None:
    """The node of the running task, None outside a tree."""
    return _CURRENT.get()


def mark(state: str) -> None:
    """Put the current node in `state` (nothing outside a tree)."""
    here = _CURRENT.get()
    if here is not None:
        here.mark(state)


def worker_ran(*, next_in_s: float | None) -> None:
    """Record that the current worker just finished a run; the next is due in
    `next_in_s` seconds (None: none planned). Nothing outside a tree."""
    here = _CURRENT.get()
    if here is None:
        return
    now = time.time()
    here.last_run = now
    here.next_run = None if next_in_s is None else now + next_in_s


def worker_next(in_s: float) -> None:
    """Record that the current worker's next run is due in `in_s` seconds."""
    here = _CURRENT.get()
    if here is not None:
        here.next_run = time.time() + in_s

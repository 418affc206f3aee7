"""The live tree registry (tree_state.py): nodes live exactly as long as what they stand
for, on their own and in a real server."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import trio

from tests.helpers import Client
from tests.limits.held_calls import HeldCall
from tests.repos import rich_repository
from trio_gitaly import tree_state
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer
from trio_gitaly.tree_state import Node, TreeState

WAIT_S = 20.0


def names(node: Node) -> list[str]:
    return [child.name for child in node.children.values()]


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in list(node.children.values()):
        yield from walk(child)


async def until(condition: Callable[[], bool]) -> None:
    with trio.fail_after(WAIT_S):
        while not condition():
            await trio.sleep(0.01)


async def test_nodes_nest_by_task_and_leave_when_done() -> None:
    tree = TreeState()
    release_child, release_parent = trio.Event(), trio.Event()

    async def child(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with tree_state.node("child") as node:
            status = node.watch_started({"task_status": task_status})["task_status"]
            await release_child.wait()  # still starting: started() not reported yet
            status.started()
            await trio.sleep_forever()

    async def parent() -> None:
        with tree_state.node("parent") as node:
            node.mark(tree_state.RUNNING)
            async with trio.open_nursery() as nursery:
                # No parent is passed: the child lands under "parent" through the context.
                nursery.start_soon(lambda: nursery.start(child))
                await release_parent.wait()
                nursery.cancel_scope.cancel()

    with tree.entered():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(parent)
            await until(lambda: bool(tree.root.children))
            (parent_node,) = tree.root.children.values()
            await until(lambda: names(parent_node) == ["child"])
            (child_node,) = parent_node.children.values()
            assert child_node.state == tree_state.STARTING
            release_child.set()
            await until(lambda: child_node.state == tree_state.RUNNING)
            assert child_node.since >= child_node.started
            # Cancelled, the child leaves; then the parent ends and leaves too.
            release_parent.set()
            await until(lambda: not tree.root.children)
    assert tree_state.current() is None, "the root stayed current after its block"


async def test_a_node_leaves_when_its_task_fails() -> None:
    tree = TreeState()

    async def failing() -> None:
        with tree_state.node("doomed"):
            await trio.lowlevel.checkpoint()
            assert names(tree.root) == ["doomed"]
            raise ValueError("boom")

    with tree.entered(), pytest.RaisesGroup(ValueError):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(failing)
    assert not tree.root.children


async def test_worker_reports_land_on_the_current_node_only() -> None:
    tree = TreeState()
    tree_state.worker_ran(next_in_s=5)  # outside a tree: nothing to report to, no error
    with tree.entered(), tree_state.node("job", kind=tree_state.WORKER) as job:
        assert job.last_run is None and job.next_run is None
        tree_state.worker_next(30)
        assert job.next_run is not None and job.next_run - job.started >= 29
        tree_state.worker_ran(next_in_s=60)
        assert job.last_run is not None and job.next_run == job.last_run + 60
        tree_state.worker_ran(next_in_s=None)
        assert job.next_run is None
    assert tree.root.last_run is None


async def test_the_server_tree_has_its_children_and_workers(server: RunningServer) -> None:
    root = server.tree.root
    assert {"workers", "listeners", "http"} <= set(names(root))
    listeners = next(n for n in root.children.values() if n.name == "listeners")
    assert set(names(listeners)) >= {"listener unix", "listener internal", "listener tcp"}
    assert all(n.kind == tree_state.LISTENER for n in listeners.children.values())
    workers = next(n for n in root.children.values() if n.name == "workers")
    cleaner = next(n for n in workers.children.values() if n.name == "tempdir cleaner")
    assert cleaner.kind == tree_state.WORKER and cleaner.state == tree_state.RUNNING
    # It cleans at once after starting, then reports its next pass an hour on.
    await until(lambda: cleaner.last_run is not None)
    assert cleaner.next_run is not None and cleaner.next_run - cleaner.last_run >= 3599


async def test_rpc_nodes_leave_when_the_rpc_ends_or_is_cancelled(
    config: Config, server: RunningServer, connect: Callable[[str], Client]
) -> None:
    rich_repository(os.path.join(config.storage[0].path, "a.git"))
    client = connect(server.addresses["tcp"][0])

    def rpcs() -> list[Node]:
        return [n for n in walk(server.tree.root) if n.kind == tree_state.RPC]

    finished, cancelled = HeldCall(client, "a.git"), HeldCall(client, "a.git")
    await finished.wait_admitted()
    await cancelled.wait_admitted()
    await until(lambda: len(rpcs()) == 2)
    details = [dict(n.details()) for n in rpcs()]
    assert {d["method"] for d in details} == {"/gitaly.SSHService/SSHUploadPack"}
    assert {d["repository"] for d in details} == {"default/a.git"}
    assert all(str(d["client"]).startswith("127.0.0.1:") for d in details)
    connections = [n for n in walk(server.tree.root) if n.kind == tree_state.CONNECTION]
    assert len(connections) == 1 and len(connections[0].children) == 2

    cancelled.cancel()
    await cancelled.wait_finished()
    await until(lambda: len(rpcs()) == 1)
    finished.release()
    await finished.wait_finished()
    await until(lambda: not rpcs())
    assert finished.error is None

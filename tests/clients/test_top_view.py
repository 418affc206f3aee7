"""What `trio-gitaly top` draws (clients/top_view.py): a busy server still fits the screen."""

from __future__ import annotations

import time

import pyte
from rich.console import Console

from trio_gitaly.clients.top_view import age, render
from trio_gitaly.tree_snapshot import CatfileView, NodeView, RpcView, Snapshot

COLUMNS, LINES = 80, 24


def screen_of(snapshot: Snapshot) -> list[str]:
    """The lines a terminal of COLUMNS x LINES shows after drawing `snapshot`."""
    console = Console(width=COLUMNS, height=LINES, force_terminal=True)
    with console.capture() as captured:
        console.print(render(snapshot, COLUMNS, LINES))
    # Every line ends in a newline; the last one's would scroll a full screen by one.
    drawn = captured.get().removesuffix("\n")
    screen = pyte.Screen(COLUMNS, LINES)
    pyte.ByteStream(screen).feed(drawn.replace("\n", "\r\n").encode())
    return [line.rstrip() for line in screen.display]


def node(name: str, kind: str = "node", children: list[NodeView] | None = None) -> NodeView:
    now = time.time()
    return NodeView(
        name=name, kind=kind, state="running", since=now, started=now, children=children or []
    )


def busy(workers: int, rpcs: int) -> Snapshot:
    now = time.time()
    tree = node(
        "root",
        children=[node("workers", children=[node(f"job {i}", "worker") for i in range(workers)])],
    )
    tree.state = "serving"
    return Snapshot(
        version="0.1.0",
        pid=1,
        now=now,
        state="serving",
        tree=tree,
        listeners=[],
        rpcs=[
            RpcView(
                method="/gitaly.RefService/FindAllBranches",
                repository=f"default/group/project-{i}.git",
                client=f"127.0.0.1:{40000 + i}",
                transport="tcp",
                started=now - i,
            )
            for i in range(rpcs)
        ],
        workers=[],
        limits=[],
        catfile=CatfileView(idle=3, max_idle=100),
    )


def test_a_quiet_server_shows_every_worker_and_no_rpc() -> None:
    lines = screen_of(busy(workers=3, rpcs=0))
    assert lines[0].startswith("trio-gitaly 0.1.0  pid 1  serving")
    assert [line[:20].rstrip() for line in lines[1:6]] == [
        "root  serving 0s",
        "└── workers",
        "    ├── job 0",
        "    ├── job 1",
        "    └── job 2",
    ]
    assert "no RPC in flight" in lines
    assert any("catfile cache 3/100 idle" in line for line in lines)


def test_a_busy_server_folds_workers_and_counts_what_does_not_fit() -> None:
    lines = screen_of(busy(workers=30, rpcs=40))
    assert lines[0].startswith("trio-gitaly 0.1.0"), "the header scrolled away"
    assert any("└── 30 jobs" in line for line in lines), "the workers were not folded"
    shown = [line for line in lines if "FindAllBranches" in line]
    assert shown and "project-39.git" in shown[0], "the oldest RPC is not first"
    assert lines[-1].strip() == f"… {40 - len(shown)} more"


def test_ages_are_short() -> None:
    assert [age(s) for s in (-1, 4, 125, 3 * 3600 + 420, 2 * 86400 + 4 * 3600)] == [
        "0s",
        "4s",
        "2m05s",
        "3h07m",
        "2d04h",
    ]

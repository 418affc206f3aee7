"""What `trio-gitaly top` draws: one snapshot as a screen of a given size.

The screen is built line by line, each cut to the width, so that it fits an 80x24
terminal whatever the server runs: a header; the tree on the left (connections and
RPCs folded into their listener's line, workers with their next run) beside the
listeners, limits and catfile cache; the RPCs, oldest first, below. When the tree is
too tall the workers fold into one line; what still does not fit is counted, not drawn.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from rich.console import Group
from rich.text import Text

from trio_gitaly.tree_snapshot import NodeView, RpcView, Snapshot

#: Width of the tree column, for terminals at least this wide plus the right column.
TREE_WIDTH: Final = 46
#: Narrowest right column worth drawing; narrower terminals get the tree alone.
MIN_SIDE_WIDTH: Final = 24
#: RPC rows kept below the tree before the tree is folded to make room.
MIN_RPC_ROWS: Final = 3

_FOLDED: Final = ("connection", "rpc")
_STATE_STYLES: Final = {
    "starting": "yellow",
    "draining": "magenta",
    "stopping": "magenta",
    "serving": "green",
}


def render(snapshot: Snapshot, width: int, height: int) -> Group:
    """The screen for `snapshot` in a `width` x `height` terminal (at most `height` lines)."""
    now = snapshot.now
    header = _header(snapshot)
    tree = _tree_lines(snapshot.tree, now, fold_workers=False)
    rpc_block = 1 + max(1, min(len(snapshot.rpcs), MIN_RPC_ROWS))
    room = max(1, height - 1 - rpc_block)
    if len(tree) > room:
        tree = _tree_lines(snapshot.tree, now, fold_workers=True)
    side_width = width - TREE_WIDTH - 2
    if side_width >= MIN_SIDE_WIDTH:
        rows = _fit(tree, room, TREE_WIDTH)
        side = _fit(_side_lines(snapshot, side_width), room, side_width)
        count = max(len(rows), len(side))
        upper = [
            left.append("  ").append_text(right)
            for left, right in zip(_pad(rows, count), _pad(side, count), strict=True)
        ]
    else:
        upper = _fit(tree, room, width)
    lines = [_cut(header, width), *(_cut(line, width) for line in upper)]
    lines.extend(_rpc_lines(snapshot.rpcs, now, width, max(1, height - len(lines))))
    return Group(*lines[:height])


def age(seconds: float) -> str:
    """A short duration: 4s, 2m05s, 3h07m, 2d04h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _header(snapshot: Snapshot) -> Text:
    line = Text()
    line.append(f"trio-gitaly {snapshot.version}", style="bold")
    line.append(f"  pid {snapshot.pid}  ")
    line.append(snapshot.state, style=_STATE_STYLES.get(snapshot.state, ""))
    line.append(f"  up {age(snapshot.now - snapshot.tree.started)}")
    line.append(f"  rpcs {len(snapshot.rpcs)}  q quits", style="dim")
    return line


def _tree_lines(root: NodeView, now: float, *, fold_workers: bool) -> list[Text]:
    lines = [_node_line(Text(), root, now)]
    lines.extend(_children(root, "", now, fold_workers))
    return lines


def _children(view: NodeView, prefix: str, now: float, fold: bool) -> Iterator[Text]:
    shown = [c for c in view.children if c.kind not in _FOLDED]
    if fold and shown and all(c.kind == "worker" for c in shown):
        shown = []
        yield Text(f"{prefix}└── ", style="dim").append(
            f"{len(view.children)} jobs{_next_of(view.children, now)}", style="dim"
        )
    hidden = view.hidden if view.kind not in ("listener", "connection") else 0
    for index, child in enumerate(shown):
        last = index == len(shown) - 1 and not hidden
        branch = "└── " if last else "├── "
        yield _node_line(Text(prefix + branch, style="dim"), child, now)
        yield from _children(child, prefix + ("    " if last else "│   "), now, fold)
    if hidden:
        yield Text(f"{prefix}└── … {hidden} more", style="dim")


def _node_line(line: Text, view: NodeView, now: float) -> Text:
    line.append(view.name, style="bold" if view.kind != "worker" else "")
    if view.state != "running":
        style = _STATE_STYLES.get(view.state, "")
        line.append(f"  {view.state} {age(now - view.since)}", style=style)
    if view.kind == "listener":
        connections = [c for c in view.children if c.kind == "connection"]
        rpcs = sum(len(c.children) + c.hidden for c in connections)
        line.append(f"  {len(connections) + view.hidden} conn · {rpcs} rpc", style="cyan")
    elif view.kind == "worker":
        line.append(_worker_detail(view, now), style="dim")
    return line


def _worker_detail(view: NodeView, now: float) -> str:
    if view.next_run is not None:
        return f"  next {age(view.next_run - now)}"
    if view.last_run is not None:
        return f"  ran {age(now - view.last_run)} ago"
    return ""


def _next_of(workers: list[NodeView], now: float) -> str:
    due = [w.next_run for w in workers if w.next_run is not None]
    return f", next in {age(min(due) - now)}" if due else ""


def _side_lines(snapshot: Snapshot, width: int) -> list[Text]:
    lines = [Text("listeners", style="bold underline")]
    for listener in snapshot.listeners:
        line = Text(f"{listener.name:<9}")
        count = f" {listener.connections}" if listener.connections is not None else ""
        room = width - len(line) - len(count)
        line.append(_tail(", ".join(listener.addresses), room).ljust(room))
        line.append(count, style="cyan")
        lines.append(line)
    lines.append(Text("limits        run queue keys", style="bold underline"))
    for limiter in snapshot.limits:
        limit = str(limiter.limit) if limiter.limit else "∞"
        lines.append(
            Text(f"{_tail(limiter.name, 13):<13} {limiter.running:>3}/{limit:<3}")
            .append(f" {limiter.queued:>3}", style="yellow" if limiter.queued else "")
            .append(f" {limiter.keys:>4}")
        )
    catfile = snapshot.catfile
    lines.append(Text(f"catfile cache {catfile.idle}/{catfile.max_idle} idle"))
    return lines


def _rpc_lines(rpcs: list[RpcView], now: float, width: int, room: int) -> list[Text]:
    title = Text(f"{'age':>6}  {'rpc':<22} {'repository':<24} client", style="bold underline")
    if not rpcs:
        return [title, Text("no RPC in flight", style="dim")][:room]
    ordered = sorted(rpcs, key=lambda rpc: rpc.started)
    rows = room - 1
    if len(ordered) > rows:
        rows = max(0, rows - 1)
    lines = [title]
    client_width = max(8, width - 57)
    for rpc in ordered[:rows]:
        method = rpc.method.rpartition("/")[2]
        lines.append(
            Text(f"{age(now - rpc.started):>6}  ")
            .append(f"{_tail(method, 22):<22} ", style="bold")
            .append(f"{_tail(rpc.repository or '-', 24):<24} ")
            .append(_tail(rpc.client or rpc.transport, client_width), style="dim")
        )
    if len(ordered) > rows:
        lines.append(Text(f"  … {len(ordered) - rows} more", style="dim"))
    return lines[:room]


def _fit(lines: list[Text], room: int, width: int) -> list[Text]:
    """At most `room` lines, the last saying how many were left out."""
    if len(lines) <= room:
        return [_cut(line, width) for line in lines]
    kept = [_cut(line, width) for line in lines[: max(0, room - 1)]]
    return [*kept, Text(f"… {len(lines) - len(kept)} more lines", style="dim")][:room]


def _pad(lines: list[Text], count: int) -> list[Text]:
    width = len(lines[0]) if lines else 0
    return lines + [Text(" " * width) for _ in range(count - len(lines))]


def _cut(line: Text, width: int) -> Text:
    cut = line.copy()
    cut.truncate(width, overflow="ellipsis", pad=True)
    return cut


def _tail(text: str, width: int) -> str:
    """`text`, or its end after "…" when longer than `width` (paths end in their name)."""
    if width <= 0:
        return ""
    return text if len(text) <= width else "…" + text[len(text) - width + 1 :]

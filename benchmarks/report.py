"""The run's outputs: the terminal table, latest.json, latest.md and latest.png.

Everything here reads the run document (a dict, exactly what latest.json holds), so the
reports can be made again from a saved JSON file (`python -m benchmarks report FILE`),
and a new suite needs nothing here.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

TIMES = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"


def _value(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "—"
    if unit == "µs":
        return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} µs"
    if unit == "calls/s":
        return f"{value:,.0f}/s"
    return f"{value:.3g} {unit}".strip()


def _ratio(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.2f}{TIMES}" if value < 10 else f"{value:.1f}{TIMES}"


def _difference(metric: dict[str, Any]) -> bool:
    """Whether the metric's "ratio" is a difference in its unit (memory growth in MB)."""
    return bool(metric["ratio"] == "candidate-baseline")


def _comparison(value: float | None, metric: dict[str, Any]) -> str:
    """A per-round comparison as the table shows it: a ratio, or a difference ("+12.5 MB")."""
    if not _difference(metric) or value is None or math.isnan(value):
        return _ratio(value)
    return f"{value:+.1f} {metric['unit']}"


def _target(metric: dict[str, Any]) -> str:
    target = metric.get("target")
    if not target:
        return ""
    unit = f" {metric['unit']}" if _difference(metric) else ""
    return f"{'≥' if target['op'] == '>=' else '≤'} {target['value']:g}{unit}"


def rows(run: dict[str, Any]) -> Iterator[dict[str, str]]:
    """One row per metric, every cell as text; `met` is "met", "NOT met", "" or a status.

    Unavailable metrics without a target collapse into one row per candidate
    ("FindCommit: 5 metrics | unavailable"); a target is always shown on its own.
    """
    collapsed: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    pending: list[dict[str, Any]] = []
    for metric in run["metrics"]:
        summary = metric["summary"]
        row: dict[str, Any] = {
            "suite": metric["suite"],
            "repo": metric["repo"],
            "metric": metric["name"],
            "baseline": "—",
            "candidate": "—",
            "ratio": metric["status"] if metric["status"] != "ok" else "—",
            "spread": "",
            "better": "↑" if metric["better"] == "higher" else "↓",
            "target": _target(metric),
            "met": "",
            "status": metric["status"],
        }
        if metric["status"] == "ok" and summary.get("ratio_median") is not None:
            row["baseline"] = _value(summary["baseline_median"], metric["unit"])
            row["candidate"] = _value(summary["candidate_median"], metric["unit"])
            row["ratio"] = _comparison(summary["ratio_median"], metric)
            low, high = (_comparison(summary[k], metric) for k in ("ratio_p25", "ratio_p75"))
            row["spread"] = f"{low}{DASH}{high}"
            if summary["met"] is not None:
                row["met"] = "met" if summary["met"] else "NOT met"
        elif metric["target"]:
            row["met"] = "not measured"
        elif metric["status"] == "unavailable":
            key = (metric["suite"], metric["repo"], metric["candidate"], metric["status"])
            if key in collapsed:
                collapsed[key]["count"] += 1
                continue
            row["count"] = 1
            row["candidate_label"] = metric["candidate"]
            collapsed[key] = row
        pending.append(row)
    for row in pending:
        count = row.pop("count", 1)
        if count > 1:
            row["metric"] = f"{row.pop('candidate_label')}: {count} metrics"
        row.pop("candidate_label", None)
        yield row


def _problems(run: dict[str, Any]) -> list[str]:
    """Why metrics are missing, once per distinct reason; suites that failed; notes."""
    seen: dict[str, None] = {}
    for metric in run["metrics"]:
        if metric["status"] != "ok" and metric["note"]:
            seen[f"{metric['status']}: {metric['repo']}: {metric['note']}"] = None
    for suite in run["suites"]:
        if suite["status"] != "ok":
            seen[f"suite {suite['name']} failed: {suite['error']}"] = None
        for note in suite["notes"]:
            seen[f"{suite['name']}: {note}"] = None
    return list(seen)


def headline(run: dict[str, Any]) -> str:
    machine = run["machine"]
    version = machine["trio_gitaly"]
    load = machine["loadavg_start"], machine["loadavg_end"]
    return (
        f"{run['started'][:16].replace('T', ' ')} UTC · mode {run['mode']} "
        f"({run['settings']['rounds']} rounds) · {machine['cores']} cores, "
        f"{machine['platform']} · Python {machine['python']} · git {machine['git']} · "
        f"trio-gitaly {version['version']} ({version['commit']}) · "
        f"load average {load[0][0]:.1f} → {load[1][0]:.1f}"
    )


def terminal(run: dict[str, Any], console: Console) -> None:
    table = Table(title=f"trio-gitaly benchmarks — {headline(run)}", title_justify="left")
    for name, justify in (
        ("suite", "left"), ("repo", "left"), ("metric", "left"), ("baseline", "right"),
        ("candidate", "right"), ("ratio (median)", "right"), (f"spread p25{DASH}p75", "right"),
        ("better", "center"), ("target", "right"), ("met", "left"),
    ):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows(run):
        style = {"met": "green", "NOT met": "bold red"}.get(row["met"], "")
        dim = "dim" if row["status"] != "ok" else ""
        table.add_row(
            row["suite"], row["repo"], Text(row["metric"], style=dim), row["baseline"],
            row["candidate"], Text(row["ratio"], style=dim), row["spread"], row["better"],
            row["target"], Text(row["met"], style=style or dim),
        )  # fmt: skip
    console.print(table)
    for line in _problems(run):
        console.print(f"  · {line}", highlight=False, markup=False)


def markdown(run: dict[str, Any], chart: str | None) -> str:
    lines = ["# trio-gitaly benchmarks", "", headline(run), ""]
    concurrency = run["settings"]["concurrency"]
    lines += [
        "Every figure is a ratio against a baseline measured in the same run, in rounds: "
        "latencies (`@1`: one call at a time) of all variants in one job, interleaved in "
        f"blocks of a few calls; calls per second (`@{concurrency}`: {concurrency} concurrent "
        "calls) one variant "
        "after another, the order rotated each round. Ratio: the median of the per-round "
        f"ratios, and their spread (p25{DASH}p75). Baseline and candidate: the medians of "
        "the per-round values. Better: which direction of the ratio is the good one. "
        "Rows in MB (memory) show a difference instead of a ratio: the candidate's value "
        "minus the baseline's.",
        "",
    ]
    if chart:
        lines += [f"![ratios and their spread]({chart})", ""]
    lines += [
        "| suite | repo | metric | baseline | candidate | ratio (median) "
        f"| spread p25{DASH}p75 | better | target | met |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | :---: | ---: | --- |",
    ]
    for row in rows(run):
        met = {"met": "✅ met", "NOT met": "❌ **not met**"}.get(row["met"], row["met"])
        cells = [
            row["suite"], row["repo"], row["metric"], row["baseline"], row["candidate"],
            row["ratio"], row["spread"], row["better"], row["target"], met,
        ]  # fmt: skip
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    problems = _problems(run)
    if problems:
        lines += ["", "Notes:", ""] + [f"- {line}" for line in problems]
    return "\n".join(lines) + "\n"


def write_json(run: dict[str, Any], path: str) -> None:
    _atomic(path, json.dumps(run, indent=1, allow_nan=False, default=_no_nan) + "\n")


def _no_nan(value: object) -> object:
    raise TypeError(f"not JSON: {value!r}")


def sanitize(value: Any) -> Any:
    """NaN and infinity become None, so that latest.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    return value


def write_markdown(run: dict[str, Any], path: str, chart: str | None) -> None:
    _atomic(path, markdown(run, chart))


def _atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


def chart(run: dict[str, Any], path: str) -> str | None:
    """Draw the ratios with their spread as a PNG; return None, or why there is no chart."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    groups: dict[str, list[dict[str, Any]]] = {}
    for metric in run["metrics"]:
        if metric["status"] == "ok" and metric["summary"].get("ratio_median") is not None:
            # Differences (MB) get panels of their own, on a linear scale.
            unit = f" · {metric['unit']}" if _difference(metric) else ""
            groups.setdefault(f"{metric['suite']} · {metric['repo']}{unit}", []).append(metric)
    if not groups:
        return "no metric was measured"
    missing = [f"{m['repo']}: {m['name']} ({m['status']})" for m in run["metrics"]
               if m["status"] != "ok"]  # fmt: skip
    footer = textwrap.wrap("not measured: " + "; ".join(missing), 190) if missing else []
    heights = [len(group) + 1.5 for group in groups.values()]
    figure, axes = plt.subplots(
        len(groups),
        1,
        figsize=(11, 1.0 + 0.26 * sum(heights) + 0.12 * len(footer)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
        layout="constrained",
    )
    for ax, (title, metrics) in zip(axes[:, 0], groups.items(), strict=True):
        _panel(ax, title, metrics)
    figure.suptitle(f"trio-gitaly benchmarks — {headline(run)}", fontsize=7, x=0.01, ha="left")
    if footer:
        figure.supxlabel("\n".join(footer), fontsize=5.5, x=0.01, ha="left", color="#555555")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None


def _panel(ax: Any, title: str, metrics: list[dict[str, Any]]) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    labels = []
    values: list[float] = []
    for index, metric in enumerate(metrics):
        s = metric["summary"]
        y = len(metrics) - 1 - index
        met = s["met"]
        color = "#2a9d4b" if met else "#d62828" if met is False else "#3a6ea5"
        ax.plot([s["ratio_min"], s["ratio_max"]], [y, y], color=color, linewidth=1, alpha=0.35)
        ax.plot([s["ratio_p25"], s["ratio_p75"]], [y, y], color=color, linewidth=4, alpha=0.8)
        ax.plot([s["ratio_median"]], [y], "o", color=color, markersize=5)
        ax.annotate(
            _comparison(s["ratio_median"], metric), (s["ratio_median"], y),
            textcoords="offset points", xytext=(0, 5), ha="center", fontsize=6, color=color,
        )  # fmt: skip
        values += [s["ratio_min"], s["ratio_max"]]
        if metric["target"]:
            target = metric["target"]["value"]
            ax.plot([target], [y], marker="|", color="black", markersize=12, markeredgewidth=2)
            values.append(target)
        arrow = "↑" if metric["better"] == "higher" else "↓"
        labels.append(f"{metric['name']}  {arrow}")
    ax.set_yticks(range(len(metrics) - 1, -1, -1), labels, fontsize=7)
    ax.set_ylim(-0.8, len(metrics) - 0.2)
    ax.set_title(title, fontsize=9, loc="left")
    ax.tick_params(axis="x", labelsize=7)
    ax.grid(axis="x", which="both", alpha=0.2)
    legend = (
        f"dot = median, bar = p25{DASH}p75, line = min{DASH}max, | = target, ↑/↓ = better direction"
    )
    if _difference(metrics[0]):
        unit = metrics[0]["unit"]
        finite = [v for v in values if math.isfinite(v)]
        low, high = min([*finite, 0.0]), max([*finite, 0.0])
        pad = (high - low) * 0.1 or 1.0
        ax.set_xlim(low - pad, high + pad)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+g} {unit}"))
        ax.axvline(0.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xlabel(f"candidate - baseline ({unit}): {legend}", fontsize=6)
        return
    ax.set_xscale("log")
    positive = [v for v in values if v and v > 0 and math.isfinite(v)] or [1.0]
    low, high = min([*positive, 1.0]) / 1.5, max([*positive, 1.0]) * 1.5
    ax.set_xlim(low, high)
    ticks = [m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5) if low <= m * 10.0**e <= high]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{TIMES}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"ratio (log scale): {legend}", fontsize=6)

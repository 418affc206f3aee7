"""What every suite shares: settings per mode, the run context, metrics and their statistics.

A metric compares a candidate with a baseline measured in the same run, round by round:
each round measures every variant once (the order rotated each round, so no variant
always runs first or right after another), and each round gives one ratio. A metric's
figures are the median of the per-round ratios and their spread (p25-p75, and min-max);
the per-round values and every raw sample are kept for the JSON file.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

from rich.console import Console

from benchmarks.repos import RepoInfo

Mode = Literal["tiny", "quick", "full"]
Status = Literal["ok", "unavailable", "error"]


@dataclass(frozen=True)
class Settings:
    """How much each measurement does; one set per mode."""

    mode: Mode
    repos: tuple[str, ...]  # generated shapes (repos.SHAPES) when no --repo is given
    rounds: int
    latency_calls: int  # per variant and round, at concurrency 1
    latency_block: int  # calls of one variant in a row: variants interleave in blocks
    latency_warmup: int  # calls before those, not recorded (a warm cache, a warm channel)
    latency_max_s: float  # per variant: a round's latency job stops early after this long
    concurrency: int
    rate_window_s: float  # the throughput window per variant and round
    rate_warmup_s: float  # before that window, at full concurrency, not counted
    # The clone, push and memory suites: whole repositories through the wire, seconds
    # each, so fewer rounds, on the generated shapes big enough to mean something.
    transfer_repos: tuple[str, ...]
    transfer_rounds: int
    memory_rounds: int  # each round runs 8 parallel clones per variant: ~30 s on 2 cores


MODES: dict[str, Settings] = {
    # The harness's own smoke test: seconds, meaningless figures.
    "tiny": Settings(
        mode="tiny", repos=("tiny",), rounds=2, latency_calls=10, latency_block=5,
        latency_warmup=2, latency_max_s=2.0, concurrency=4, rate_window_s=0.2,
        rate_warmup_s=0.05, transfer_repos=("tiny",), transfer_rounds=2,
        memory_rounds=1,
    ),
    "quick": Settings(
        mode="quick", repos=("small",), rounds=7, latency_calls=300, latency_block=25,
        latency_warmup=20, latency_max_s=4.0, concurrency=32, rate_window_s=1.0,
        rate_warmup_s=0.3, transfer_repos=("medium",), transfer_rounds=3,
        memory_rounds=2,
    ),
    "full": Settings(
        mode="full", repos=("small", "medium"), rounds=10, latency_calls=600,
        latency_block=25, latency_warmup=50, latency_max_s=8.0, concurrency=32,
        rate_window_s=1.5, rate_warmup_s=0.5, transfer_repos=("medium",),
        transfer_rounds=10, memory_rounds=5,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Target:
    """What the ratio's median must reach: `>= 0.70`, `<= 1.05`."""

    op: Literal[">=", "<="]
    value: float

    def met(self, ratio: float) -> bool:
        return ratio >= self.value if self.op == ">=" else ratio <= self.value

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {self.value:g}"


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile with linear interpolation between order statistics (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Metric:
    """One comparison: a candidate against its baseline, one value of each per round.

    `ratio` says which way it divides: "candidate/baseline" (a latency 2.0x the echo's,
    0.6 of the echo's calls per second) or "baseline/candidate" (a speedup: 12x faster);
    or "candidate-baseline", a difference in `unit` where a ratio would mean nothing (the
    server's memory growth: peak RSS minus idle RSS, in MB). The per-round "ratios" and
    their summary are then those differences, and a target bounds them in `unit`.
    `better` says which direction of that ratio is the good one.
    """

    id: str  # stable across runs: "rpc/small/FindCommit/rps_c32/echo_ours"
    suite: str
    repo: str
    name: str  # what the table shows: "FindCommit calls/s @32 ÷ our echo"
    unit: str  # of the baseline and candidate values: "µs", "calls/s"
    baseline: str
    candidate: str
    ratio: Literal["candidate/baseline", "baseline/candidate", "candidate-baseline"] = (
        "candidate/baseline"
    )
    better: Literal["higher", "lower"] = "higher"
    target: Target | None = None
    status: Status = "ok"
    note: str = ""  # why unavailable, what failed
    baseline_values: list[float] = field(default_factory=list)
    candidate_values: list[float] = field(default_factory=list)

    def ratios(self) -> list[float]:
        pairs = zip(self.baseline_values, self.candidate_values, strict=True)
        if self.ratio == "candidate-baseline":
            return [c - b for b, c in pairs]
        if self.ratio == "candidate/baseline":
            return [c / b if b else math.nan for b, c in pairs]
        return [b / c if c else math.nan for b, c in pairs]

    def summary(self) -> dict[str, Any]:
        """Median and spread of the per-round ratios, and whether the target is met."""
        ratios = [r for r in self.ratios() if not math.isnan(r)]
        if self.status != "ok" or not ratios:
            return {"n": len(ratios), "met": None}
        median = statistics.median(ratios)
        return {
            "n": len(ratios),
            "baseline_median": statistics.median(self.baseline_values),
            "candidate_median": statistics.median(self.candidate_values),
            "ratio_median": median,
            "ratio_p25": quantile(ratios, 0.25),
            "ratio_p75": quantile(ratios, 0.75),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "met": None if self.target is None else self.target.met(median),
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = (
            None if self.target is None else {"op": self.target.op, "value": self.target.value}
        )
        data["ratios"] = self.ratios()
        data["summary"] = self.summary()
        return data


@dataclass
class SuiteResult:
    """What a suite hands back: its metrics, every raw sample, and notes for the report."""

    metrics: list[Metric] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    """What a suite runs with: the mode's settings, the repositories, a scratch directory."""

    settings: Settings
    repos: list[RepoInfo]
    workdir: str  # removed after the run; short enough for unix socket paths
    log_level: str  # of the servers under test ("info": one access-log line per call)
    console: Console
    cache_dir: str = ""  # where generated repositories are kept (repos.ensure)

    def progress(self, message: str) -> None:
        self.console.log(message, highlight=False, markup=False)


@dataclass(frozen=True)
class Suite:
    """A suite is a module with `SUITE = Suite(...)`; benchmarks/suites lists them."""

    name: str
    summary: str
    run: Callable[[Context], SuiteResult]


V = TypeVar("V")


def rotation(variants: Sequence[V], round_: int) -> list[V]:
    """The order of `variants` in round `round_`: A B C, then B C A, then C A B, ...

    All variants of a round run within seconds of each other (noise hits them alike),
    and none is always first or always right after the same other one.
    """
    if not variants:
        return []
    start = round_ % len(variants)
    return [*variants[start:], *variants[:start]]


def interleaved(rounds: int, variants: Sequence[V], measure: Callable[[V, int], None]) -> None:
    """Measure every variant once per round, in each round's `rotation`."""
    for round_ in range(rounds):
        for variant in rotation(variants, round_):
            measure(variant, round_)


def percentile_of(samples: Sequence[float], q: float) -> float:
    """A percentile of raw samples (latencies), as `quantile` but 0-100."""
    return quantile(samples, q / 100)

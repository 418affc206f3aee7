"""Measuring variants round by round, and turning pairs of them into metrics.

A `Variant` is one thing to time: an RPC on a server (a `Call`), or a command spawned per
call (`argvs`). A `Bench` runs the load jobs for one suite and repository, keeps every
raw sample (with the server's CPU time over the job), and records one value per variant,
statistic and round: "p50_us", "p99_us" (concurrency 1; all variants of a round in one
job, interleaved in blocks of a few calls) and "rps" (at concurrency N; one variant at a time, the
order rotated each round).
`Bench.metric` pairs two variants' values of one statistic into a `Metric`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from benchmarks.core import Context, Metric, Status, Target, percentile_of, rotation
from benchmarks.load import Call, LoadClient, spawn_entry
from benchmarks.servers import ServerProcess

# Checks a probe's answer messages; returns what is wrong, or None.
Check = Callable[[list[bytes]], "str | None"]

STAT_UNITS = {"p50_us": "µs", "p99_us": "µs", "rps": "calls/s"}


@dataclass
class Variant:
    key: str  # "FindCommit", "echo_ours"
    label: str  # what the table shows: "FindCommit", "echo (our layer)"
    server: ServerProcess | None = None
    call: Call | None = None
    argvs: tuple[tuple[str, ...], ...] = ()  # a command per call instead of an RPC
    env: dict[str, str] | None = None
    check: Check | None = None
    status: Status = "ok"  # from the probe: "unavailable" or "error" means never timed
    note: str = ""
    # A kind of job ("latency", "rate") that had failed calls -> what failed; that kind
    # is not measured again, and its metrics are errors. The other kind goes on.
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.status == "ok"


@dataclass
class Bench:
    ctx: Context
    client: LoadClient
    suite: str
    repo: str
    samples: list[dict[str, Any]] = field(default_factory=list)
    # (variant key, statistic) -> round -> value
    values: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)

    def probe(self, variant: Variant) -> None:
        """One call: UNIMPLEMENTED marks the variant unavailable, a wrong answer an error."""
        if variant.call is None or variant.server is None:
            return
        answer = self.client.probe(variant.server.address, variant.call)
        self.samples.append(
            {
                "suite": self.suite, "repo": self.repo, "variant": variant.key, "kind": "probe",
                "code": answer["code"], "details": answer["details"],
            }
        )  # fmt: skip
        if not answer["ok"]:
            unimplemented = answer["code"] == "UNIMPLEMENTED"
            variant.status = "unavailable" if unimplemented else "error"
            variant.note = f"{answer['code']}: {answer['details']}"
            return
        if variant.check is not None:
            try:
                problem = variant.check(answer["responses"])
            except Exception as exc:  # an answer that does not even parse
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                variant.status, variant.note = "error", f"wrong answer: {problem}"

    def latency_round(self, variants: Sequence[Variant], round_: int) -> None:
        """`latency_calls` calls of each variant at concurrency 1, interleaved in blocks
        (load.py's `mixed` job): this round's p50 and p99 of each."""
        live = [v for v in variants if v.available and "latency" not in v.failures]
        if not live:
            return
        settings = self.ctx.settings
        servers = {v.server.name: v.server for v in live if v.server is not None}
        cpu = {name: server.cpu_seconds() for name, server in servers.items()}
        answer = self.client.mixed(
            [_entry(v) for v in live],
            calls=settings.latency_calls,
            warmup=settings.latency_warmup,
            max_s=settings.latency_max_s * len(live),
            block=settings.latency_block,
        )
        server_cpu = {
            name: round(server.cpu_seconds() - cpu[name], 3) for name, server in servers.items()
        }
        self.samples.append(
            {
                "suite": self.suite, "repo": self.repo, "kind": "latency", "round": round_,
                "variants": [v.key for v in live], "elapsed_s": answer["elapsed_s"],
                "client_cpu_s": answer["client_cpu_s"], "server_cpu_s": server_cpu,
            }
        )  # fmt: skip
        for variant, result in zip(live, answer["results"], strict=True):
            latencies: list[float] = result["latencies_us"]
            self.samples.append(
                {
                    "suite": self.suite, "repo": self.repo, "variant": variant.key,
                    "kind": "latency", "round": round_, **result,
                }
            )  # fmt: skip
            if not self._ok(variant, "latency", round_, result) or not latencies:
                continue
            self._record(variant, "p50_us", round_, percentile_of(latencies, 50))
            self._record(variant, "p99_us", round_, percentile_of(latencies, 99))

    def rate(self, variant: Variant, round_: int) -> None:
        """Calls per second at the mode's concurrency, over this round's window."""
        if not variant.available or "rate" in variant.failures:
            return
        if variant.call is None or variant.server is None:
            return
        settings = self.ctx.settings
        cpu = variant.server.cpu_seconds()
        answer = self.client.rate(
            variant.server.address,
            variant.call,
            concurrency=settings.concurrency,
            window_s=settings.rate_window_s,
            warmup_s=settings.rate_warmup_s,
        )
        server_cpu = variant.server.cpu_seconds() - cpu
        calls = answer["calls"]
        self.samples.append(
            {
                "suite": self.suite, "repo": self.repo, "variant": variant.key, "kind": "rate",
                "round": round_, **answer, "server_cpu_s": round(server_cpu, 3),
                "server_cpu_us_per_call": round(server_cpu / calls * 1e6, 1) if calls else None,
            }
        )  # fmt: skip
        if not self._ok(variant, "rate", round_, answer):
            return
        self._record(variant, "rps", round_, answer["calls"] / answer["window_s"])

    def _ok(self, variant: Variant, kind: str, round_: int, answer: dict[str, Any]) -> bool:
        if not answer["errors"]:
            return True
        failed = sum(answer["errors"].values())
        concurrency = self.ctx.settings.concurrency if kind == "rate" else 1
        variant.failures[kind] = (
            f"{failed} failed calls at concurrency {concurrency} in round {round_ + 1}, "
            f"e.g. {answer['first_error']}"
        )
        self.ctx.progress(f"[{self.suite}/{self.repo}] {variant.label}: {variant.failures[kind]}")
        return False

    def _record(self, variant: Variant, stat: str, round_: int, value: float) -> None:
        self.values.setdefault((variant.key, stat), {})[round_] = value

    def metric(
        self,
        stat: str,
        *,
        name: str,
        candidate: Variant,
        baseline: Variant,
        ratio: Literal["candidate/baseline", "baseline/candidate"] = "candidate/baseline",
        better: Literal["higher", "lower"] = "lower",
        target: Target | None = None,
        id_suffix: str = "",
    ) -> Metric:
        """Pair `candidate` and `baseline` on `stat`, over the rounds both have a value."""
        metric = Metric(
            id="/".join(p for p in (self.suite, self.repo, candidate.key, stat, id_suffix) if p),
            suite=self.suite,
            repo=self.repo,
            name=name,
            unit=STAT_UNITS.get(stat, ""),
            baseline=baseline.label,
            candidate=candidate.label,
            ratio=ratio,
            better=better,
            target=target,
        )
        kind = "rate" if stat == "rps" else "latency"
        for variant in (candidate, baseline):
            if not variant.available:
                metric.status, metric.note = variant.status, f"{variant.label}: {variant.note}"
                return metric
            if kind in variant.failures:
                metric.status = "error"
                metric.note = f"{variant.label}: {variant.failures[kind]}"
                return metric
        mine = self.values.get((candidate.key, stat), {})
        theirs = self.values.get((baseline.key, stat), {})
        rounds = sorted(set(mine) & set(theirs))
        metric.candidate_values = [mine[r] for r in rounds]
        metric.baseline_values = [theirs[r] for r in rounds]
        if not rounds:
            metric.status, metric.note = "error", "no round measured both"
        return metric


def run_rounds(
    bench: Bench, variants: Sequence[Variant], *, rates: bool = True, label: str = ""
) -> None:
    """Each round: every variant's latency, then every variant's rate, in rotated order.

    A variant that fails stops being measured; the others go on.
    """
    rounds = bench.ctx.settings.rounds
    for round_ in range(rounds):
        bench.ctx.progress(f"[{label or bench.suite}] round {round_ + 1}/{rounds}")
        bench.latency_round(rotation([v for v in variants if v.available], round_), round_)
        if rates:
            for variant in rotation([v for v in variants if v.available], round_):
                bench.rate(variant, round_)


def _entry(variant: Variant) -> dict[str, Any]:
    if variant.call is not None and variant.server is not None:
        return variant.call.entry(variant.server.address)
    return spawn_entry(variant.argvs, variant.env)

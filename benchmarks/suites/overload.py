"""Overload: 10 times the clone limit at once; how fast the excess is refused, and whether
the admitted clones complete.

The server runs with Gitaly's per-RPC limiter on SSHUploadPack: `LIMIT` running calls per
repository and `QUEUE` waiting; any call beyond those is refused at once with
RESOURCE_EXHAUSTED "maximum queue size reached". Each round sends `CLIENTS` (10 times LIMIT)
clients at the same repository at once, in two bursts (their order rotated per round):

- grpc: `CLIENTS` SSHUploadPack streams from a grpcio client in this process, one channel
  (one connection) each, connected beforehand. Each call's time runs from sending its
  first message (the repository) to RESOURCE_EXHAUSTED, or to the first stdout message
  (git's capability advertisement) for an admitted one. Admitted streams hold their slots
  until every call is answered, so exactly LIMIT + QUEUE are admitted and the rest must
  be refused; then each sends a flush packet, half-closes and must end with exit status
  0 (the queued one starts only then). The 100 ms target is judged here, on the slowest
  refusal of the round: the git path below adds `trio-gitaly ssh`'s own start-up (~120 ms
  of Python, 20 of them at once on a shared machine), which says nothing about the
  server. The server's own view, the access log's grpc.time_ms of the refused calls, is
  shown beside it.
- ssh: `CLIENTS` real `git clone --bare` through `trio-gitaly ssh` (GIT_SSH_COMMAND).
  Admitted ones must complete with the source's refs (a clone refused for any other
  reason than the limit counts as not completed); refused ones must fail with "maximum
  queue size reached" in git's stderr. Admitted clones finish and free their slots while
  late ones still arrive, so on a small repository more than LIMIT + QUEUE get in: the
  refused count is informative, compared with the excess CLIENTS - LIMIT - QUEUE. The
  server's RSS (VmRSS, the Python process only, as in the memory suite) is sampled every
  `POLL_INTERVAL_S` during this burst; its peak over the idle RSS just before is shown.

After each burst the server's /metrics must show the slots free again (in progress and
queued back to 0 within `SETTLE_TIMEOUT_S`), and its gitaly_requests_dropped_total must
have grown by as many refusals as the clients saw.

Baselines: the target is absolute (refused within 100 ms), so the time figures are
absolute too, written as differences ("candidate-baseline") against the moment the first
message was sent (0 ms), as the memory suite writes its MB. Counts are ratios against
what the configuration implies: completed ÷ admitted (target: all, 1.0), refused ÷ the
excess. One untimed clone and one untimed grpc burst warm the server up first.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from benchmarks.burst import POLL_INTERVAL_S, REFUSED, RPC, upload_pack_burst
from benchmarks.core import Context, Metric, Suite, SuiteResult, Target, rotation
from benchmarks.repos import RepoInfo
from benchmarks.servers import ServerProcess, trio_gitaly
from benchmarks.suites.memory import MB, idle_mb
from benchmarks.suites.rpc import relative_path, repository
from benchmarks.suites.startup import free_port
from benchmarks.transfer import (
    COMMAND_TIMEOUT_S,
    Remote,
    Variant,
    clone_argv,
    failure,
    metric,
    probe,
    refs_digest,
    repositories,
    tail,
    timed,
)
from trio_gitaly.rpc.gen.gitaly import ssh_pb2

SUITE_NAME = "overload"
LIMIT = 2  # max_per_repo: the clone limit
QUEUE = 1  # max_queue_size
CLIENTS = 10 * LIMIT
EXCESS = CLIENTS - LIMIT - QUEUE
CONFIG = f"""
[[concurrency]]
rpc = "{RPC}"
max_per_repo = {LIMIT}
max_queue_size = {QUEUE}
max_queue_wait = "0"
"""
REFUSAL_TARGET = Target("<=", 100.0)  # ms
ALL_TARGET = Target(">=", 1.0)  # completed ÷ admitted
METRICS_TIMEOUT_S = 10.0
SETTLE_TIMEOUT_S = 5.0


@dataclass
class CloneOutcome:
    """One `git clone` of the ssh burst."""

    returncode: int
    wall_ms: float  # spawn → exit
    stderr: str
    refs_ok: bool = False

    @property
    def refused(self) -> bool:
        return self.returncode != 0 and REFUSED in self.stderr


def clone_burst(
    remote: Remote, server: ServerProcess, dests: list[str], logs: str
) -> tuple[list[CloneOutcome], list[float]]:
    """Start one clone into each of `dests` at once; each one's exit status and wall
    time, and the server's RSS (MB) sampled until the last one exited."""
    processes: list[subprocess.Popen[bytes]] = []
    began: list[float] = []
    ended: dict[int, float] = {}
    stderr_paths = [os.path.join(logs, f"{os.path.basename(dest)}.stderr") for dest in dests]
    series: list[float] = []
    try:
        for dest, stderr_path in zip(dests, stderr_paths, strict=True):
            with open(stderr_path, "wb") as stderr:
                began.append(time.perf_counter())
                processes.append(
                    subprocess.Popen(
                        clone_argv(remote, dest), env=remote.env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=stderr,
                    )
                )  # fmt: skip
        deadline = time.perf_counter() + COMMAND_TIMEOUT_S
        while len(ended) < len(processes):
            server.check_alive()
            series.append(round(server.rss_bytes() / MB, 2))
            for index, process in enumerate(processes):
                if index not in ended and process.poll() is not None:
                    ended[index] = time.perf_counter()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(dests)} clones took over {COMMAND_TIMEOUT_S:g} s")
            time.sleep(POLL_INTERVAL_S)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    outcomes = []
    for index, (process, stderr_path) in enumerate(zip(processes, stderr_paths, strict=True)):
        with open(stderr_path, "rb") as stderr:
            text = tail(stderr.read())
        wall_ms = (ended[index] - began[index]) * 1000
        outcomes.append(CloneOutcome(process.returncode, wall_ms, text))
    return outcomes, series


def log_offset(server: ServerProcess) -> int:
    return os.path.getsize(server.log_path)


def logged_refusals_ms(server: ServerProcess, offset: int) -> list[float]:
    """grpc.time_ms of the SSHUploadPack calls refused by the limiter since `offset`."""
    times = []
    with open(server.log_path, "rb") as log:
        log.seek(offset)
        for raw in log:
            if b"ResourceExhausted" not in raw:
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if (
                entry.get("grpc.method") == "SSHUploadPack"
                and entry.get("grpc.code") == "ResourceExhausted"
                and "grpc.time_ms" in entry
            ):
                times.append(float(entry["grpc.time_ms"]))
    return times


def scrape(port: int) -> dict[str, float]:
    """The limiter's figures for SSHUploadPack on /metrics: in progress, queued, dropped."""
    from prometheus_client.parser import text_string_to_metric_families

    # No proxy between us and the loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=METRICS_TIMEOUT_S) as answer:
        text = answer.read().decode()
    wanted = {
        "gitaly_concurrency_limiting_in_progress": "in_progress",
        "gitaly_concurrency_limiting_queued": "queued",
        "gitaly_requests_dropped_total": "dropped",
    }
    figures = dict.fromkeys(wanted.values(), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted and sample.labels.get("grpc_method") == "SSHUploadPack":
                figures[wanted[sample.name]] += sample.value
    return figures


def settled(port: int) -> dict[str, float]:
    """/metrics once no slot is held or queued any more (or `SETTLE_TIMEOUT_S` passed)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        figures = scrape(port)
        if figures["in_progress"] == figures["queued"] == 0 or time.monotonic() > deadline:
            return figures
        time.sleep(POLL_INTERVAL_S)


def _p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def grpc_round(server: ServerProcess, repo: RepoInfo) -> tuple[dict[str, float], dict[str, Any]]:
    """One grpc burst: its figures (stat -> value) and its raw sample."""
    request = ssh_pb2.SSHUploadPackRequest(repository=repository(repo), git_protocol="version=2")
    series: list[float] = []

    def poll() -> None:
        series.append(round(server.rss_bytes() / MB, 2))

    offset = log_offset(server)
    # The queued calls cannot answer before the admitted ones let go of their slots.
    outcomes = asyncio.run(
        upload_pack_burst(
            f"unix:{server.socket}", request.SerializeToString(), CLIENTS,
            hold_until=CLIENTS - QUEUE, poll=poll,
        )
    )  # fmt: skip
    refused = [o.answered_ms for o in outcomes if o.kind == "refused"]
    admitted = [o for o in outcomes if o.kind == "admitted"]
    held = [o.answered_ms for o in admitted if not o.queued]
    on_server = logged_refusals_ms(server, offset)
    stats = {
        "zero_ms": 0.0, "refused": len(refused), "excess": EXCESS,
        "completed": sum(o.completed for o in admitted), "configured": LIMIT + QUEUE,
    }  # fmt: skip
    if refused:
        stats |= {"refusal_max_ms": max(refused), "refusal_p50_ms": _p50(refused)}
    if on_server:
        stats["server_refusal_max_ms"] = max(on_server)
    if held:
        stats["first_stdout_ms"] = _p50(held)
    sample = {
        "refused_ms": [round(v, 3) for v in refused], "server_refused_ms": on_server,
        "first_stdout_ms": [round(v, 3) for v in held], "admitted": len(admitted),
        "errors": [f"{o.code}: {o.details}" for o in outcomes if o.kind == "error"],
        "series_mb": series,
    }  # fmt: skip
    return stats, sample


def ssh_round(
    remote: Remote, server: ServerProcess, expected: str, dests: list[str], logs: str
) -> tuple[dict[str, float], dict[str, Any]]:
    """One burst of real clones: its figures (stat -> value) and its raw sample."""
    try:
        before = idle_mb(server)
        outcomes, series = clone_burst(remote, server, dests, logs)
        for outcome, dest in zip(outcomes, dests, strict=True):
            outcome.refs_ok = outcome.returncode == 0 and refs_digest(dest) == expected
    finally:
        for dest in dests:
            shutil.rmtree(dest, ignore_errors=True)
    refused = [o.wall_ms for o in outcomes if o.refused]
    admitted = [o for o in outcomes if not o.refused]
    stats = {
        "zero_ms": 0.0, "refused": len(refused), "excess": EXCESS, "admitted": len(admitted),
        "completed": sum(o.refs_ok for o in admitted), "before_mb": before,
        "peak_mb": max(series),
    }  # fmt: skip
    if refused:
        stats["refusal_p50_ms"] = _p50(refused)
    sample = {
        "refused_ms": [round(v, 1) for v in refused],
        "admitted_ms": [round(o.wall_ms, 1) for o in admitted],
        "errors": [o.stderr for o in admitted if not o.refs_ok],
        "idle_before_mb": round(before, 2), "series_mb": series,
    }  # fmt: skip
    return stats, sample


def warm_up(ctx: Context, server: ServerProcess, repo: RepoInfo, ssh: Variant) -> None:
    """The ssh probe and one untimed clone, then one untimed grpc burst."""
    assert ssh.remote is not None
    ssh.fail(*probe(ssh.remote, server, fetch=True))
    if ssh.available:
        dest = os.path.join(ctx.workdir, "clones", "warmup")
        done = timed(clone_argv(ssh.remote, dest), ssh.remote, server)
        shutil.rmtree(dest, ignore_errors=True)
        if done.returncode != 0:
            ssh.fail("error", failure("git clone", done, server))
    if not ssh.available:
        ctx.progress(f"[{SUITE_NAME}/{repo.name}] {ssh.label}: {ssh.note}")
    grpc_round(server, repo)


def measure(
    ctx: Context, server: ServerProcess, port: int, repo: RepoInfo, result: SuiteResult
) -> None:
    """The warm-up and the rounds for one repository; its metrics into `result`."""
    logs = os.path.join(ctx.workdir, "clone-logs")
    os.makedirs(logs, exist_ok=True)
    expected = refs_digest(repo.path)
    grpc = Variant("grpc", "grpcio streams")
    ssh = Variant("ssh", "trio-gitaly ssh", Remote.ssh(server, relative_path(repo)))
    counted = Variant("metrics", "/metrics")
    warm_up(ctx, server, repo, ssh)

    def round_of(variant: Variant, round_: int) -> None:
        dropped = scrape(port)["dropped"]
        if variant is grpc:
            stats, sample = grpc_round(server, repo)
        else:
            assert variant.remote is not None
            dests = [os.path.join(ctx.workdir, "clones", f"{round_}-{i}") for i in range(CLIENTS)]
            stats, sample = ssh_round(variant.remote, server, expected, dests, logs)
        after = settled(port)
        for stat, value in stats.items():
            variant.record(stat, round_, value)
        for stat, value in (("dropped", after["dropped"] - dropped), ("seen", stats["refused"])):
            counted.record(stat, round_, counted.values.get(stat, {}).get(round_, 0) + value)
        sample |= {"clients": CLIENTS, "limit": LIMIT, "queue": QUEUE, "metrics_after": after}
        result.samples.append(variant.sample(SUITE_NAME, repo.name, "burst", round_, **sample))
        where = f"round {round_ + 1}, {variant.label}"
        if after["in_progress"] or after["queued"]:
            result.notes.append(f"{where}: slots still held {SETTLE_TIMEOUT_S:g} s after: {after}")
        if sample["errors"]:
            result.notes.append(f"{where}: {len(sample['errors'])} failed: {sample['errors'][0]}")

    rounds = ctx.settings.transfer_rounds
    for round_ in range(rounds):
        ctx.progress(f"[{SUITE_NAME}/{repo.name}] round {round_ + 1}/{rounds}")
        for variant in rotation([v for v in (grpc, ssh) if v.available], round_):
            round_of(variant, round_)
    result.metrics += metrics(repo, grpc, ssh, counted)


def metrics(repo: RepoInfo, grpc: Variant, ssh: Variant, counted: Variant) -> list[Metric]:
    """The table's rows: times as differences from t = 0, counts as ratios."""
    rows = []
    for variant, stat, name, target in (
        (grpc, "refusal_max_ms", f"time to refuse the excess: slowest of {EXCESS} calls",
         REFUSAL_TARGET),
        (grpc, "refusal_p50_ms", "time to refuse the excess: median call", None),
        (grpc, "server_refusal_max_ms", "time to refuse, the server's access log: slowest", None),
        (grpc, "first_stdout_ms", f"time to first stdout of the {LIMIT} admitted calls", None),
        (ssh, "refusal_p50_ms", "refused git clone: spawn → exit (with ssh helper start-up)",
         None),
    ):  # fmt: skip
        rows.append(
            metric(
                SUITE_NAME, repo.name, name=f"{name} via {variant.label}", unit="ms",
                candidate=variant, baseline=variant, stat=stat, baseline_stat="zero_ms",
                ratio="candidate-baseline", target=target,
                labels=("sent" if variant is grpc else "spawned", stat.removesuffix("_ms")),
            )
        )  # fmt: skip
    for variant, stat, of, unit, name, target in (
        (grpc, "completed", "configured", "calls",
         f"admitted calls completed ÷ limit + queue ({LIMIT + QUEUE})", ALL_TARGET),
        (grpc, "refused", "excess", "calls", f"calls refused ÷ the excess ({EXCESS})", None),
        (ssh, "completed", "admitted", "clones", "admitted clones completed ÷ admitted",
         ALL_TARGET),
        (ssh, "refused", "excess", "clones", f"clones refused ÷ the excess ({EXCESS})", None),
        (counted, "dropped", "seen", "calls",
         "gitaly_requests_dropped_total ÷ refusals the clients saw", None),
    ):  # fmt: skip
        row = metric(
            SUITE_NAME, repo.name, name=f"{name} via {variant.label}" if variant is not counted
            else name, unit=unit, candidate=variant, baseline=variant, stat=stat,
            baseline_stat=of, target=target, labels=(of, stat),
        )  # fmt: skip
        row.better = "higher"
        rows.append(row)
    rows.append(
        metric(
            SUITE_NAME, repo.name, name=f"RSS growth during {CLIENTS} clones via {ssh.label}",
            unit="MB", candidate=ssh, baseline=ssh, stat="peak_mb", baseline_stat="before_mb",
            ratio="candidate-baseline", labels=("idle before", "peak"),
        )
    )  # fmt: skip
    return rows


def run(ctx: Context) -> SuiteResult:
    result = SuiteResult()
    repos = repositories(ctx)
    mapping = {relative_path(repo): repo.path for repo in repos}
    port = free_port()
    with trio_gitaly(
        ctx.workdir, mapping, log_level=ctx.log_level, metrics_port=port, extra_config=CONFIG
    ) as server:
        for repo in repos:
            measure(ctx, server, port, repo, result)
    result.notes.append(
        f"{CLIENTS} clients at once against max_per_repo = {LIMIT}, max_queue_size = {QUEUE} "
        f"on {RPC}; {ctx.settings.transfer_rounds} rounds, the grpc and ssh bursts "
        f"interleaved; times from the first message sent (grpc) or the spawn (ssh)"
    )
    return result


SUITE = Suite(
    name=SUITE_NAME,
    summary=f"{CLIENTS} clones at once against a limit of {LIMIT}: time to refuse the excess "
    "(≤ 100 ms), completion of the admitted",
    run=run,
)

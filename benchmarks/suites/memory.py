"""Memory: the server's resident memory idle, and its growth while 8 clones run at once.

RSS is VmRSS of the server process itself (/proc/<pid>/status): the Python process that
relays every byte between git and the client. The git processes it spawns are not
counted: their memory is git's own, the same with or without trio-gitaly. MB = 10^6 bytes.

First the idle RSS at start (the median of `IDLE_SAMPLES` samples `SAMPLE_INTERVAL_S`
apart, once the server is ready), then one untimed clone through each variant (code
imported on first use, first-call caches), then idle again ("warm"). Each round, for each
variant (the order rotated): the idle RSS just before, then `PARALLEL` simultaneous
`git clone --bare` of the repository with RSS sampled every `SAMPLE_INTERVAL_S` until the
last one exits (the peak), then, after `SETTLE_S`, idle again (what stays). Every clone's
refs are checked against the source's; the clones are removed after each round.

Variants: ssh (`trio-gitaly ssh` as GIT_SSH_COMMAND; the target) and http (the gateway,
informative). These figures are differences in MB, not ratios ("candidate-baseline"):
- peak RSS during the clones - idle just before them: target ≤ 50 MB (ssh);
- RSS `SETTLE_S` after the clones - before them (informative: what they leave behind);
- idle RSS at start → warm, once: the idle figures themselves.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from typing import Any

from benchmarks.core import Context, Suite, SuiteResult, Target, rotation
from benchmarks.repos import RepoInfo
from benchmarks.servers import ServerProcess, trio_gitaly
from benchmarks.suites.rpc import relative_path
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

GROWTH_TARGET = Target("<=", 50.0)  # MB
PARALLEL = 8
SAMPLE_INTERVAL_S = 0.05
IDLE_SAMPLES = 10
SETTLE_S = 1.0
MB = 1e6
SUITE_NAME = "memory"


def rss_mb(server: ServerProcess) -> float:
    server.check_alive()
    return server.rss_bytes() / MB


def idle_mb(server: ServerProcess) -> float:
    """The median of `IDLE_SAMPLES` samples, `SAMPLE_INTERVAL_S` apart."""
    values = []
    for _ in range(IDLE_SAMPLES):
        values.append(rss_mb(server))
        time.sleep(SAMPLE_INTERVAL_S)
    return statistics.median(values)


def parallel_clones(
    remote: Remote, server: ServerProcess, dests: list[str], logs: str
) -> dict[str, Any]:
    """Run one clone into each of `dests` at once, sampling the server's RSS until all
    have exited; returns the samples (MB), the wall time and each clone's status."""
    processes: list[subprocess.Popen[bytes]] = []
    stderr_paths = [os.path.join(logs, f"{os.path.basename(dest)}.stderr") for dest in dests]
    series: list[float] = []
    begin = time.perf_counter()
    try:
        for dest, stderr_path in zip(dests, stderr_paths, strict=True):
            with open(stderr_path, "wb") as stderr:
                processes.append(
                    subprocess.Popen(
                        clone_argv(remote, dest), env=remote.env, stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL, stderr=stderr,
                    )
                )  # fmt: skip
        deadline = begin + COMMAND_TIMEOUT_S
        while True:
            series.append(round(rss_mb(server), 2))
            if all(process.poll() is not None for process in processes):
                break
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(dests)} parallel clones took over {COMMAND_TIMEOUT_S}s")
            time.sleep(SAMPLE_INTERVAL_S)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
    wall_s = time.perf_counter() - begin
    errors = []
    for process, stderr_path in zip(processes, stderr_paths, strict=True):
        if process.returncode != 0:
            with open(stderr_path, "rb") as stderr:
                errors.append(f"status {process.returncode}: {tail(stderr.read())}")
    return {"series_mb": series, "wall_s": wall_s, "errors": errors}


def measure(ctx: Context, server: ServerProcess, repo: RepoInfo, result: SuiteResult) -> None:
    """Idle, the warm-up and the rounds for one repository; its metrics into `result`."""
    clones = os.path.join(ctx.workdir, "clones")
    logs = os.path.join(ctx.workdir, "clone-logs")
    os.makedirs(logs, exist_ok=True)
    expected = refs_digest(repo.path)
    relative = relative_path(repo)
    ssh = Variant("ssh", "trio-gitaly ssh", Remote.ssh(server, relative))
    http = Variant("http", "HTTP gateway", Remote.http(server, relative))
    chosen = [ssh, http]
    idle = Variant("server", "server")
    idle.record("start_mb", 0, idle_mb(server))
    for variant in chosen:
        assert variant.remote is not None
        variant.fail(*probe(variant.remote, server, fetch=True))
        if variant.available:  # the untimed warm-up clone
            dest = os.path.join(clones, f"{variant.key}-warmup")
            done = timed(clone_argv(variant.remote, dest), variant.remote, server)
            shutil.rmtree(dest, ignore_errors=True)
            if done.returncode != 0:
                variant.fail("error", failure("git clone", done, server))
        if not variant.available:
            ctx.progress(f"[memory/{repo.name}] {variant.label}: {variant.note}")
    idle.record("warm_mb", 0, idle_mb(server))
    start, warm = idle.values["start_mb"][0], idle.values["warm_mb"][0]
    result.samples.append(
        idle.sample(SUITE_NAME, repo.name, "idle", None, start_mb=start, warm_mb=warm)
    )

    def round_of(variant: Variant, round_: int) -> None:
        assert variant.remote is not None
        dests = [os.path.join(clones, f"{variant.key}-{round_}-{i}") for i in range(PARALLEL)]
        try:
            before = idle_mb(server)
            answer = parallel_clones(variant.remote, server, dests, logs)
            refs_ok = not answer["errors"] and all(refs_digest(d) == expected for d in dests)
        finally:
            for dest in dests:
                shutil.rmtree(dest, ignore_errors=True)
        time.sleep(SETTLE_S)
        after = idle_mb(server)
        peak = max(answer["series_mb"])
        result.samples.append(
            variant.sample(
                SUITE_NAME, repo.name, "parallel_clones", round_, clones=PARALLEL,
                idle_before_mb=round(before, 2), peak_mb=peak, after_mb=round(after, 2),
                refs_ok=refs_ok, **answer,
            )
        )  # fmt: skip
        if answer["errors"]:
            variant.fail("error", f"{len(answer['errors'])} clones failed: {answer['errors'][0]}")
        elif not refs_ok:
            variant.fail("error", "a clone's refs differ from the source repository's")
        else:
            variant.record("before_mb", round_, before)
            variant.record("peak_mb", round_, peak)
            variant.record("after_mb", round_, after)

    rounds = ctx.settings.memory_rounds
    for round_ in range(rounds):
        ctx.progress(f"[memory/{repo.name}] round {round_ + 1}/{rounds}")
        for variant in rotation([v for v in chosen if v.available], round_):
            round_of(variant, round_)

    result.metrics.append(
        metric(
            SUITE_NAME, repo.name, name="server RSS idle: at start → after one clone each",
            unit="MB", candidate=idle, baseline=idle, stat="warm_mb", baseline_stat="start_mb",
            ratio="candidate-baseline", labels=("at start", "warm"),
        )
    )  # fmt: skip
    for variant in chosen:
        for stat, name, target in (
            ("peak_mb", f"RSS growth during {PARALLEL} parallel clones", GROWTH_TARGET),
            ("after_mb", f"RSS left {SETTLE_S:g} s after them", None),
        ):
            result.metrics.append(
                metric(
                    SUITE_NAME, repo.name, name=f"{name} via {variant.label}", unit="MB",
                    candidate=variant, baseline=variant, stat=stat, baseline_stat="before_mb",
                    ratio="candidate-baseline", labels=("idle before", stat.removesuffix("_mb")),
                    target=target if variant is ssh else None,
                )
            )  # fmt: skip


def run(ctx: Context) -> SuiteResult:
    result = SuiteResult()
    repos = repositories(ctx)
    mapping = {relative_path(repo): repo.path for repo in repos}
    with trio_gitaly(
        ctx.workdir, mapping, log_level=ctx.log_level, gateway_port=free_port()
    ) as server:
        for repo in repos:
            measure(ctx, server, repo, result)
    result.notes.append(
        f"VmRSS of the server process (not its git processes), MB = 10^6 bytes; "
        f"{ctx.settings.memory_rounds} rounds of {PARALLEL} parallel bare clones per "
        f"variant, interleaved, RSS sampled every {SAMPLE_INTERVAL_S * 1000:g} ms"
    )
    return result


SUITE = Suite(
    name=SUITE_NAME,
    summary=f"server RSS idle, and its growth during {PARALLEL} parallel clones (≤ 50 MB)",
    run=run,
)

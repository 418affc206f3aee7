"""The catfile cache: FindCommit with a warm cache against one git spawn per call.

Candidate: FindCommit on the real server at concurrency 1, after warm-up calls (so the
repository's `git cat-file --batch-command` process is running), cycling through
commits spread over the history. Baseline: the load client itself spawning
`git cat-file commit <oid>` per call for the same commits of the same repository, the
least a server without a cache would have to do (no gRPC, no parsing).

Metric: the baseline's latency ÷ FindCommit's (a speedup), p50 and p99.
Target: p50 at least 10 times faster.

For context, the same rounds time the echo of benchmarks/echo_ours.py: the spawn's p50 ÷
the echo's is the ceiling of that speedup, what an RPC doing no work at all through our
serving layer would reach.
"""

from __future__ import annotations

import contextlib

from benchmarks.core import Context, Suite, SuiteResult, Target
from benchmarks.load import LoadClient
from benchmarks.measure import Bench, Variant, run_rounds
from benchmarks.repos import GIT_ENV
from benchmarks.servers import echo_ours, trio_gitaly
from benchmarks.suites.rpc import echo_variants, relative_path, rpc_variants

SPEEDUP_TARGET = Target(">=", 10.0)
_GIT_ENV_KEYS = ("GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM", "LC_ALL")


def run(ctx: Context) -> SuiteResult:
    result = SuiteResult()
    repositories = {relative_path(repo): repo.path for repo in ctx.repos}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            trio_gitaly(ctx.workdir, repositories, log_level=ctx.log_level)
        )
        ours_server = stack.enter_context(echo_ours(ctx.workdir, log_level=ctx.log_level))
        client = stack.enter_context(LoadClient(ctx.workdir))
        for repo in ctx.repos:
            bench = Bench(ctx, client, "catfile", repo.name)
            find_commit = next(v for v in rpc_variants(server, repo) if v.key == "FindCommit")
            find_commit.label = "FindCommit (warm cache)"
            spawn = Variant(
                "spawn",
                "git cat-file commit per call",
                argvs=tuple(
                    ("git", "-C", repo.path, "cat-file", "commit", oid) for oid in repo.commit_oids
                ),
                env={key: GIT_ENV[key] for key in _GIT_ENV_KEYS},
            )
            echo = echo_variants(ours_server, ours_server)[0]
            bench.probe(find_commit)
            bench.probe(echo)
            if not find_commit.available:
                ctx.progress(f"[catfile/{repo.name}] FindCommit: {find_commit.note}")
            variants = [v for v in (find_commit, spawn, echo) if v.available]
            run_rounds(bench, variants, rates=False, label=f"catfile/{repo.name}")
            server.check_alive()
            for stat, name, target in (
                ("p50_us", "FindCommit p50 speedup vs a git spawn per call", SPEEDUP_TARGET),
                ("p99_us", "FindCommit p99 speedup vs a git spawn per call", None),
            ):
                result.metrics.append(
                    bench.metric(
                        stat, name=name, candidate=find_commit, baseline=spawn,
                        ratio="baseline/candidate", better="higher", target=target,
                    )
                )  # fmt: skip
            result.metrics.append(
                bench.metric(
                    "p50_us", name="ceiling: our echo p50 speedup vs a git spawn per call",
                    candidate=echo, baseline=spawn, ratio="baseline/candidate", better="higher",
                )
            )  # fmt: skip
            result.samples += bench.samples
    result.notes.append(
        "catfile baseline: `git cat-file commit <oid>` spawned by the client, one per call"
    )
    return result


SUITE = Suite(
    name="catfile",
    summary="FindCommit with a warm catfile cache vs one `git cat-file` spawn per call",
    run=run,
)

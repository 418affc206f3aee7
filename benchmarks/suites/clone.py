"""Clone: a ≥ 100 MB repository through trio-gitaly against `git clone --no-local` of it.

Baseline: `git clone --bare --no-local <path>`: git's own upload-pack on the same bare
repository, over a pipe, nothing in between. Candidates, through a running trio-gitaly
whose storage holds that repository (a symlink), with an unmodified git:
- ssh: `GIT_SSH_COMMAND="trio-gitaly ssh --address unix://<socket>"`
  `git clone --bare ssh://trio-gitaly/default/bench/<name>.git` (the SSH service);
- http: `git clone --bare http://127.0.0.1:<port>/default/bench/<name>.git` (the gateway).
All three speak protocol v2, git's default (a traced `git ls-remote` checks it first).
The server's git runs with Gitaly's pack settings (pack.threads: log2 of the cores), the
baseline with git's defaults, as a deployment would compare them.

After one untimed clone of each (a warm page cache; the server's first calls), each round
clones once with each variant, the order rotated. Every clone goes into a fresh
directory, its refs are compared with the source's, and it is removed: all untimed.
Metric: the candidate's wall time (spawn → exit) ÷ the baseline's, per round.
Target: ≤ 1.05 for both. The samples also keep the server process's own CPU time per
clone (what relaying the pack costs it; its git processes are not counted).
"""

from __future__ import annotations

import os
import shutil
import statistics

from benchmarks.core import Context, Suite, SuiteResult, Target, rotation
from benchmarks.repos import RepoInfo
from benchmarks.servers import ServerProcess, trio_gitaly
from benchmarks.suites.rpc import relative_path
from benchmarks.suites.startup import free_port
from benchmarks.transfer import (
    Remote,
    Variant,
    clone_argv,
    failure,
    metric,
    probe,
    refs_digest,
    repositories,
    timed,
)

CLONE_TARGET = Target("<=", 1.05)
SUITE_NAME = "clone"


def variants(server: ServerProcess, repo: RepoInfo) -> list[Variant]:
    """The baseline first, then the candidates."""
    relative = relative_path(repo)
    return [
        Variant("direct", "git clone --no-local", Remote.local(repo.path)),
        Variant("ssh", "trio-gitaly ssh", Remote.ssh(server, relative)),
        Variant("http", "HTTP gateway", Remote.http(server, relative)),
    ]


def measure(ctx: Context, server: ServerProcess, repo: RepoInfo, result: SuiteResult) -> None:
    """The warm-up and the rounds for one repository; its metrics into `result`."""
    clones = os.path.join(ctx.workdir, "clones")
    expected = refs_digest(repo.path)
    chosen = variants(server, repo)
    for variant in chosen:
        assert variant.remote is not None
        variant.fail(*probe(variant.remote, server, fetch=True))
        if not variant.available:
            ctx.progress(f"[clone/{repo.name}] {variant.label}: {variant.note}")

    def clone(variant: Variant, round_: int | None) -> None:
        assert variant.remote is not None
        dest = os.path.join(clones, f"{variant.key}-{'warmup' if round_ is None else round_}")
        try:
            done = timed(clone_argv(variant.remote, dest), variant.remote, server)
            ok = done.returncode == 0 and refs_digest(dest) == expected
            result.samples.append(
                variant.sample(
                    SUITE_NAME, repo.name, "clone", round_, wall_s=done.wall_s,
                    server_cpu_s=done.server_cpu_s, returncode=done.returncode, refs_ok=ok,
                )
            )  # fmt: skip
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        if done.returncode != 0:
            variant.fail("error", failure("git clone", done, server))
        elif not ok:
            variant.fail("error", "the clone's refs differ from the source repository's")
        elif round_ is not None:
            variant.record("wall_s", round_, done.wall_s)
            variant.record("server_cpu_s", round_, done.server_cpu_s)
        if not variant.available:
            ctx.progress(f"[clone/{repo.name}] {variant.label}: {variant.note}")

    for variant in chosen:
        if variant.available:
            clone(variant, None)
    rounds = ctx.settings.transfer_rounds
    for round_ in range(rounds):
        ctx.progress(f"[clone/{repo.name}] round {round_ + 1}/{rounds}")
        for variant in rotation([v for v in chosen if v.available], round_):
            clone(variant, round_)

    direct, *candidates = chosen
    for candidate in candidates:
        result.metrics.append(
            metric(
                SUITE_NAME, repo.name, name=f"clone via {candidate.label} ÷ direct clone",
                unit="s", candidate=candidate, baseline=direct, stat="wall_s",
                target=CLONE_TARGET,
            )
        )  # fmt: skip
        cpu = candidate.values.get("server_cpu_s", {}).values()
        if cpu:
            result.notes.append(
                f"{repo.name}: median CPU time of the server process per clone via "
                f"{candidate.label}: {statistics.median(cpu):.2f} s (git's own excluded)"
            )


def run(ctx: Context) -> SuiteResult:
    result = SuiteResult()
    repos = repositories(ctx)
    mapping = {relative_path(repo): repo.path for repo in repos}
    with trio_gitaly(
        ctx.workdir, mapping, log_level=ctx.log_level, gateway_port=free_port()
    ) as server:
        for repo in repos:
            measure(ctx, server, repo, result)
            server.check_alive()
    packed = ", ".join(f"{repo.name} {repo.packed_bytes / 1e6:.0f} MB packed" for repo in repos)
    result.notes.append(
        f"bare clones ({packed}), protocol v2; {ctx.settings.transfer_rounds} rounds of one "
        "clone per variant, interleaved, after one untimed clone each"
    )
    return result


SUITE = Suite(
    name=SUITE_NAME,
    summary="clone through trio-gitaly ssh and the HTTP gateway ÷ git clone --no-local",
    run=run,
)

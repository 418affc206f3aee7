"""Push: a fresh history into an empty repository through trio-gitaly, against a direct push.

The history: the benchmark repository's default branch (for the medium one, ~21k commits
and ~107 MB of pack, nearly all of it), plus its first `PUSHED_BRANCHES` other branches
and first `PUSHED_TAGS` tags: a handful of refs. A push through trio-gitaly runs the hooks
that have work (here, with neither GitLab nor custom hooks: pre-receive), each a process of
its own, as Gitaly's are.

Every push goes from the benchmark repository (`git -C <repo> push --quiet <url> <refs>`)
into a new empty bare repository, made before it and removed after it (untimed); its
refs are then compared with the source's. Variants:
- direct (the baseline): into a path, git's own receive-pack over a pipe;
- direct with the server's config: the same into a target configured as trio-gitaly
  configures every receive-pack (Gitaly's settings: fsck of every pushed object, pack
  threads log2(cores), reverse indexes): the same git work as a push through the server,
  without the server;
- ssh: through `trio-gitaly ssh` as GIT_SSH_COMMAND into a repository in the server's
  storage (the SSH service: quarantine, hooks, fsck);
- http: through the gateway's git-receive-pack.
git pushes with protocol v0 (there is no v2 push). After one untimed push of each, each
round pushes once with each variant, the order rotated.

Metrics (wall time, spawn → exit, per round): ssh ÷ direct with the server's config (target
≤ 1.10: what trio-gitaly itself adds); ssh ÷ direct, http ÷ direct and direct with the
server's config ÷ direct (informative: what Gitaly's receive settings cost). The samples
and notes also count the hook calls the server logged per push, and their time span.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import statistics
import subprocess

from benchmarks.core import Context, Suite, SuiteResult, Target, rotation
from benchmarks.repos import GIT_ENV, RepoInfo, git
from benchmarks.servers import ServerProcess, trio_gitaly
from benchmarks.suites.startup import free_port
from benchmarks.transfer import (
    Remote,
    Variant,
    failure,
    metric,
    probe,
    refs_digest,
    repositories,
    timed,
)
from trio_gitaly.transport.options import receive_pack_config

PUSH_TARGET = Target("<=", 1.10)
PUSHED_BRANCHES = 2  # besides the default branch
PUSHED_TAGS = 2
SUITE_NAME = "push"
WARMUP = "warmup"
SERVED = ("ssh", "http")  # the variants that push into the server's storage


def pushed_refs(repo: RepoInfo) -> list[str]:
    """The default branch, then the first few other branches and tags, by name."""
    refs = git(repo.path, "for-each-ref", "--format=%(refname)", "refs/heads/", "refs/tags/")
    names = refs.decode().split()
    heads = [n for n in names if n.startswith("refs/heads/") and n != repo.default_branch]
    tags = [n for n in names if n.startswith("refs/tags/")]
    return [repo.default_branch, *heads[:PUSHED_BRANCHES], *tags[:PUSHED_TAGS]]


def target_name(repo: RepoInfo, key: str, round_: int | None) -> str:
    return f"{repo.name}-{key}-{WARMUP if round_ is None else round_}.git"


def storage_layout(repos: list[RepoInfo], targets: str, rounds: int) -> dict[str, str]:
    """Relative path -> target directory of every repository the server receives into.

    All exist as symlinks from the start; each target is made just before its push.
    """
    layout = {}
    for repo in repos:
        for key in SERVED:
            for round_ in (None, *range(rounds)):
                name = target_name(repo, key, round_)
                layout[f"push/{name}"] = os.path.join(targets, name)
    return layout


def hook_calls(log_path: str, relative: str) -> tuple[int, float]:
    """The HookService calls the server logged for the repository at `relative`: how
    many, and the seconds from the end of the first to the end of the last."""
    times = []
    with open(log_path, "rb") as log:
        for raw in log:
            if b"gitaly.HookService" not in raw or relative.encode() not in raw:
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("grpc.request.repoPath") == relative:
                times.append(datetime.datetime.fromisoformat(entry["time"]).timestamp())
    return len(times), (max(times) - min(times) if times else 0.0)


def measure(
    ctx: Context, server: ServerProcess, repo: RepoInfo, targets: str, result: SuiteResult
) -> list[str]:
    """The warm-up and the rounds for one repository; returns the refs it pushed."""
    refs = pushed_refs(repo)
    refspecs = [f"{ref}:{ref}" for ref in refs]
    expected = refs_digest(repo.path, refs)
    direct = Variant("direct", "direct push")
    fsck = Variant("fsck", "direct push with the server's receive config")
    ssh = Variant("ssh", "trio-gitaly ssh")
    http = Variant("http", "HTTP gateway")
    chosen = [direct, fsck, ssh, http]
    probes = {"ssh": Remote.ssh(server, "push"), "http": Remote.http(server, "push")}
    for variant in (ssh, http):
        variant.fail(*probe(probes[variant.key], server, fetch=False))
        if not variant.available:
            ctx.progress(f"[push/{repo.name}] {variant.label}: {variant.note}")

    def push(variant: Variant, round_: int | None) -> None:
        name = target_name(repo, variant.key, round_)
        path = os.path.join(targets, name)
        branch = repo.default_branch.removeprefix("refs/heads/")
        subprocess.run(
            ["git", "init", "--bare", "--quiet", f"--initial-branch={branch}", path],
            env=GIT_ENV, check=True, capture_output=True,
        )  # fmt: skip
        if variant.key == "fsck":
            for key, value in receive_pack_config():
                git(path, "config", "--add", key, value)
        if variant.key == "ssh":
            remote = Remote.ssh(server, f"push/{name}")
        elif variant.key == "http":
            remote = Remote.http(server, f"push/{name}")
        else:
            remote = Remote.local(path)
        argv = ["git", "-C", repo.path, "push", "--quiet", remote.url, *refspecs]
        served = variant.key in SERVED
        try:
            done = timed(argv, remote, server if served else None)
            ok = done.returncode == 0 and refs_digest(path, refs) == expected
            hooks, span = hook_calls(server.log_path, f"push/{name}") if served else (0, 0.0)
            result.samples.append(
                variant.sample(
                    SUITE_NAME, repo.name, "push", round_, wall_s=done.wall_s,
                    server_cpu_s=done.server_cpu_s, returncode=done.returncode, refs_ok=ok,
                    hook_calls=hooks, hooks_span_s=round(span, 3),
                )
            )  # fmt: skip
            if round_ is not None and hooks:
                variant.record("hook_calls", round_, hooks)
                variant.record("hooks_span_s", round_, span)
        finally:
            shutil.rmtree(path, ignore_errors=True)
        if done.returncode != 0:
            variant.fail("error", failure("git push", done, server))
        elif not ok:
            variant.fail("error", "the pushed refs differ from the source repository's")
        elif round_ is not None:
            variant.record("wall_s", round_, done.wall_s)
        if not variant.available:
            ctx.progress(f"[push/{repo.name}] {variant.label}: {variant.note}")

    for variant in chosen:
        if variant.available:
            push(variant, None)
    rounds = ctx.settings.transfer_rounds
    for round_ in range(rounds):
        ctx.progress(f"[push/{repo.name}] round {round_ + 1}/{rounds}")
        for variant in rotation([v for v in chosen if v.available], round_):
            push(variant, round_)

    for candidate, baseline, target, suffix, name in (
        (ssh, fsck, PUSH_TARGET, "fsck", "push via trio-gitaly ssh ÷ direct push, same config"),
        (http, fsck, None, "fsck", "push via HTTP gateway ÷ direct push, same config"),
        (ssh, direct, None, "", "push via trio-gitaly ssh ÷ direct push, git's defaults"),
        (http, direct, None, "", "push via HTTP gateway ÷ direct push, git's defaults"),
        (fsck, direct, None, "", "direct push: server's receive config ÷ git's defaults"),
    ):
        result.metrics.append(
            metric(
                SUITE_NAME, repo.name, name=name, unit="s", candidate=candidate,
                baseline=baseline, stat="wall_s", target=target, id_suffix=suffix,
            )
        )  # fmt: skip
    for variant in (ssh, http):
        if variant.values.get("hook_calls"):
            calls = statistics.median(variant.values["hook_calls"].values())
            span = statistics.median(variant.values["hooks_span_s"].values())
            result.notes.append(
                f"{repo.name}: via {variant.label}, {calls:g} hook calls per push (a process "
                f"each), {span:.2f} s from the first one's end to the last one's (medians)"
            )
    return refs


def run(ctx: Context) -> SuiteResult:
    result = SuiteResult()
    repos = repositories(ctx)
    targets = os.path.join(ctx.workdir, "targets")
    os.makedirs(targets)
    layout = storage_layout(repos, targets, ctx.settings.transfer_rounds)
    with trio_gitaly(
        ctx.workdir, layout, log_level=ctx.log_level, gateway_port=free_port()
    ) as server:
        for repo in repos:
            refs = measure(ctx, server, repo, targets, result)
            server.check_alive()
            result.notes.append(
                f"{repo.name}: pushed {len(refs)} refs ({', '.join(refs)}) into an empty "
                f"repository, {repo.packed_bytes / 1e6:.0f} MB packed at the source; "
                f"{ctx.settings.transfer_rounds} rounds of one push per variant, interleaved, "
                "after one untimed push each; protocol v0 (git has no v2 push)"
            )
    return result


SUITE = Suite(
    name=SUITE_NAME,
    summary="push of a fresh history through trio-gitaly ssh (and the gateway) ÷ a direct push",
    run=run,
)

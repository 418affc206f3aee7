"""What the clone, push and memory suites share: whole repositories through the wire.

- `repositories(ctx)`: what they run on: the mode's `transfer_repos` (generated, cached;
  the medium one, ≥ 100 MB packed, outside tiny mode), or the `--repo` repositories.
- `Remote`: how an unmodified git reaches a repository: directly on the file system
  (the baseline), through `trio-gitaly ssh` as GIT_SSH_COMMAND (ssh://trio-gitaly/...),
  or through the HTTP gateway (http://127.0.0.1:port/<storage>/<relative path>).
- `probe(...)`: whether a remote's transport exists yet, and speaks protocol v2.
- `timed(...)`: one git command, its wall time and the server process's CPU time.
- `Variant` and `metric(...)`: values per statistic and round, paired into a `Metric`.

Every git runs without user or system config (repos.GIT_ENV), with git's default
protocol: v2 for fetches (`probe` checks it), v0 for pushes (git has no v2 push).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from benchmarks.core import Context, Metric, Status, Target
from benchmarks.repos import GIT_ENV, SHAPES, RepoInfo, ensure, inspect
from benchmarks.servers import ServerProcess, log_tail

STORAGE = "default"
SSH_HOST = "trio-gitaly"  # git needs a host in the URL; `trio-gitaly ssh` ignores it
STDERR_TAIL_BYTES = 1500
COMMAND_TIMEOUT_S = 900.0  # a clone or push of the medium repository takes seconds
PROBE_TIMEOUT_S = 60.0

# Repositories read once per run, whichever suite needs them first: path -> workload.
_inspected: dict[str, RepoInfo] = {}


def repositories(ctx: Context) -> list[RepoInfo]:
    """The repositories to move: `--repo` ones as given, else the mode's generated shapes.

    A generated shape is made (once, cached) on first use, so that a run of the other
    suites never waits for the medium repository.
    """
    if any(repo.shape is None for repo in ctx.repos):
        return list(ctx.repos)
    result = []
    for name in ctx.settings.transfer_repos:
        known = next((repo for repo in ctx.repos if repo.name == name), None)
        if known is None:
            path = ensure(SHAPES[name], ctx.cache_dir)
            if path not in _inspected:
                _inspected[path] = inspect(name, path, SHAPES[name])
            known = _inspected[path]
        result.append(known)
    return result


def git_env(**extra: str) -> dict[str, str]:
    """The environment of the git commands under test."""
    return {
        **GIT_ENV,
        "GIT_TERMINAL_PROMPT": "0",  # a gateway asking for credentials fails, never hangs
        # A proxy configured on the machine must not sit between git and the gateway.
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **extra,
    }


def trio_gitaly_command() -> list[str]:
    """This environment's `trio-gitaly` console script (else `python -m trio_gitaly`)."""
    script = os.path.join(os.path.dirname(sys.executable), "trio-gitaly")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-m", "trio_gitaly"]


@dataclass(frozen=True)
class Remote:
    """How git reaches a repository: a URL (or a path), with the environment it needs."""

    kind: Literal["local", "ssh", "http"]
    url: str
    env: dict[str, str]

    @classmethod
    def local(cls, path: str) -> Remote:
        return cls("local", path, git_env())

    @classmethod
    def ssh(cls, server: ServerProcess, relative: str) -> Remote:
        command = [*trio_gitaly_command(), "ssh", "--address", f"unix://{server.socket}"]
        env = git_env(GIT_SSH_COMMAND=shlex.join(command))
        return cls("ssh", f"ssh://{SSH_HOST}/{STORAGE}/{relative}", env)

    @classmethod
    def http(cls, server: ServerProcess, relative: str) -> Remote:
        return cls("http", f"http://{server.gateway}/{STORAGE}/{relative}", git_env())


def probe(remote: Remote, server: ServerProcess | None, *, fetch: bool) -> tuple[Status, str]:
    """Whether `remote` can be measured: ("ok", ""), or ("unavailable" | "error", why).

    "unavailable": its transport is not there yet (`trio-gitaly ssh` unknown, nothing
    listening on the gateway's port). With `fetch`, a traced `git ls-remote` must then
    succeed and show protocol v2 (else "error").
    """
    if remote.kind == "ssh":
        done = subprocess.run(
            [*trio_gitaly_command(), "ssh", "--help"],
            capture_output=True, check=False, timeout=PROBE_TIMEOUT_S,
        )  # fmt: skip
        if done.returncode != 0:
            return "unavailable", f"`trio-gitaly ssh` is not available: {tail(done.stderr)}"
    if remote.kind == "http" and server is not None:
        host, _, port = server.gateway.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=2.0).close()
        except OSError as exc:
            return "unavailable", f"nothing listens on the gateway's {server.gateway}: {exc}"
    if not fetch:
        return "ok", ""
    done = subprocess.run(
        ["git", "ls-remote", remote.url],
        env={**remote.env, "GIT_TRACE_PACKET": "1"},
        capture_output=True, check=False, timeout=PROBE_TIMEOUT_S,
    )  # fmt: skip
    if done.returncode != 0:
        return "error", f"git ls-remote failed ({done.returncode}): {tail(done.stderr)}"
    # The client's side of the trace: "packet:   ls-remote< version 2".
    if b"< version 2" not in done.stderr:
        return "error", "the server did not answer with protocol v2"
    return "ok", ""


@dataclass
class Timed:
    """One git command under test."""

    wall_s: float
    server_cpu_s: float  # the server process's own CPU time meanwhile (not its git's)
    returncode: int
    stderr: str  # its end


def timed(argv: Sequence[str], remote: Remote, server: ServerProcess | None) -> Timed:
    """Run `argv` with `remote`'s environment, timed from spawn to exit."""
    cpu = server.cpu_seconds() if server is not None else float("nan")
    begin = time.perf_counter()
    done = subprocess.run(
        list(argv), env=remote.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, check=False, timeout=COMMAND_TIMEOUT_S,
    )  # fmt: skip
    wall_s = time.perf_counter() - begin
    server_cpu_s = server.cpu_seconds() - cpu if server is not None else float("nan")
    return Timed(wall_s, server_cpu_s, done.returncode, tail(done.stderr))


def clone_argv(remote: Remote, dest: str) -> list[str]:
    """A bare clone; `--no-local` makes a path go through upload-pack like any remote."""
    no_local = ["--no-local"] if remote.kind == "local" else []
    return ["git", "clone", "--bare", "--quiet", *no_local, remote.url, dest]


def refs_digest(path: str, patterns: Sequence[str] = ("refs/heads/", "refs/tags/")) -> str:
    """A digest of `path`'s refs matching `patterns`, with what they point at."""
    out = subprocess.run(
        ["git", "-C", path, "for-each-ref", "--format=%(objectname) %(refname)", *patterns],
        env=GIT_ENV, capture_output=True, check=True,
    ).stdout  # fmt: skip
    return hashlib.sha256(out).hexdigest()


def failure(what: str, result: Timed, server: ServerProcess | None) -> str:
    """A note for a command that failed, with the server's state when it died."""
    note = f"{what} exited with status {result.returncode}: {result.stderr}"
    if server is not None and server.process.poll() is not None:
        note += f"; the server died: {log_tail(server.log_path, 5)}"
    return note


def tail(data: bytes) -> str:
    return data[-STDERR_TAIL_BYTES:].decode(errors="replace").strip()


@dataclass
class Variant:
    """One way of doing a suite's operation, and what it measured round by round."""

    key: str  # "direct", "ssh", "http"
    label: str  # what the table shows
    remote: Remote | None = None
    status: Status = "ok"
    note: str = ""
    # statistic ("wall_s", "peak_mb", ...) -> round -> value
    values: dict[str, dict[int, float]] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.status == "ok"

    def fail(self, status: Status, note: str) -> None:
        self.status, self.note = status, note

    def record(self, stat: str, round_: int, value: float) -> None:
        self.values.setdefault(stat, {})[round_] = value

    def sample(
        self, suite: str, repo: str, kind: str, round_: int | None, **data: Any
    ) -> dict[str, Any]:
        """A raw sample for the JSON file."""
        return {
            "suite": suite, "repo": repo, "variant": self.key, "kind": kind, "round": round_,
            **data,
        }  # fmt: skip


def metric(
    suite: str,
    repo: str,
    *,
    name: str,
    unit: str,
    candidate: Variant,
    baseline: Variant,
    stat: str,
    baseline_stat: str = "",
    ratio: Literal["candidate/baseline", "candidate-baseline"] = "candidate/baseline",
    target: Target | None = None,
    labels: tuple[str, str] | None = None,
    id_suffix: str = "",
) -> Metric:
    """Pair `candidate`'s `stat` with `baseline`'s `baseline_stat` (default: the same),
    over the rounds both have. Lower is better for every figure of these suites.

    `labels`: (baseline, candidate) for the table, when not the variants' own labels.
    """
    baseline_label, candidate_label = labels or (baseline.label, candidate.label)
    out = Metric(
        id="/".join(p for p in (suite, repo, candidate.key, stat, id_suffix) if p),
        suite=suite, repo=repo, name=name, unit=unit, baseline=baseline_label,
        candidate=candidate_label, ratio=ratio, better="lower", target=target,
    )  # fmt: skip
    for variant in (candidate, baseline):
        if not variant.available:
            out.status, out.note = variant.status, f"{variant.label}: {variant.note}"
            return out
    mine = candidate.values.get(stat, {})
    theirs = baseline.values.get(baseline_stat or stat, {})
    rounds = sorted(set(mine) & set(theirs))
    out.candidate_values = [mine[r] for r in rounds]
    out.baseline_values = [theirs[r] for r in rounds]
    if not rounds:
        out.status, out.note = "error", f"no round measured both ({stat})"
    return out

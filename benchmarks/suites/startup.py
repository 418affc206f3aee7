"""Start-up: time to ready with 10,000 repositories in the storage against an empty one.

Each start is a cold process: `python -m trio_gitaly run --config <cfg>` spawned by the
harness, timed from just before the spawn until its HTTP `/readyz` answers 200 (every
listener bound, git detected), polled every few milliseconds on a free loopback port
(`prometheus_listen_addr`). The server's own figure, the `duration_ms` of its
"Started trio-gitaly" log line (from the kernel's process start time), is kept too. Then
the server is stopped with SIGTERM and the harness waits for it to exit (also timed).

Variants: baseline, a storage with no repository; candidate, a storage with 10,000
repositories (100 in tiny mode), laid out as GitLab's hashed storage does,
`@hashed/ab/cd/<sha256>.git`. They are tiny bare repositories (HEAD, config, objects/,
refs/) made cheaply: one `git init --bare` with an empty template, its files hard-linked
into every copy; built once and cached under `<cache>/startup/`.

Each round starts each variant once, the order alternating (A B, B A, ...), after one
untimed start of each (warm page cache, the storage's metadata file written).
Metric: the candidate's time to ready ÷ the baseline's, per round. Target: ≤ 1.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.core import Context, Metric, Suite, SuiteResult, Target, rotation
from benchmarks.repos import GIT_ENV
from benchmarks.servers import ServerError, child_env, log_tail, python_argv

READY_TARGET = Target("<=", 1.1)
REPOSITORIES = {"tiny": 100, "quick": 10_000, "full": 10_000}
POLL_S = 0.002  # between /readyz probes
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# Bump when the layout of the cached storage changes: it is then built again.
FLEET_VERSION = 1
STORAGE = "default"


@dataclass
class Variant:
    key: str  # "empty", "fleet"
    label: str  # what the table shows
    storage: str
    repositories: int
    # statistic ("ready_ms", "server_ms", "stop_ms") -> round -> value
    values: dict[str, dict[int, float]] = field(default_factory=dict)


def cache_root(ctx: Context) -> str:
    """The harness's cache directory: where the generated repositories are kept.

    The context does not carry it; a generated repository lives at
    `<cache>/repos/<name>-<digest>.git` (repos.ensure), so it is read off those. With
    `--repo PATH` only, the default of `python -m benchmarks` (or its environment variable).
    """
    explicit = getattr(ctx, "cache_dir", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    for repo in ctx.repos:
        parent = os.path.dirname(os.path.normpath(repo.path))
        if repo.shape is not None and os.path.basename(parent) == "repos":
            return os.path.dirname(parent)
    return os.environ.get("TRIO_GITALY_BENCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "trio-gitaly-bench"
    )


def hashed_path(project_id: int) -> str:
    """GitLab's hashed storage path of a project: `@hashed/ab/cd/abcd....git`."""
    digest = hashlib.sha256(str(project_id).encode()).hexdigest()
    return f"@hashed/{digest[:2]}/{digest[2:4]}/{digest}.git"


def ensure_fleet(cache_dir: str, count: int, ctx: Context) -> str:
    """A storage directory with `count` tiny bare repositories, built once and cached."""
    root = os.path.join(cache_dir, "startup")
    fleet = os.path.join(root, f"fleet-{count}-v{FLEET_VERSION}")
    storage = os.path.join(fleet, "storage")
    if os.path.exists(os.path.join(fleet, "complete")):
        return storage
    os.makedirs(root, exist_ok=True)
    ctx.progress(f"[startup] building a storage of {count:,} repositories in {fleet}")
    begin = time.monotonic()
    building = tempfile.mkdtemp(prefix=f"fleet-{count}-", dir=root)
    try:
        template = os.path.join(building, "template.git")
        empty = os.path.join(building, "empty-template")
        os.mkdir(empty)
        subprocess.run(
            ["git", "init", "--bare", "--quiet", f"--template={empty}", template],
            env=GIT_ENV, check=True, capture_output=True,
        )  # fmt: skip
        dirs: list[str] = []
        files: list[str] = []
        for top, subdirs, names in os.walk(template):
            relative = os.path.relpath(top, template)
            dirs += [os.path.normpath(os.path.join(relative, d)) for d in subdirs]
            files += [os.path.normpath(os.path.join(relative, n)) for n in names]
        target = os.path.join(building, "storage")
        for project_id in range(1, count + 1):
            repo = os.path.join(target, hashed_path(project_id))
            os.makedirs(repo)
            for name in sorted(dirs):
                os.mkdir(os.path.join(repo, name))
            for name in files:
                source = os.path.join(template, name)
                try:
                    os.link(source, os.path.join(repo, name))
                except OSError:  # a file system without hard links
                    shutil.copy2(source, os.path.join(repo, name))
        shutil.rmtree(template)
        os.rmdir(empty)
        with open(os.path.join(building, "complete"), "w", encoding="utf-8") as marker:
            json.dump({"repositories": count, "version": FLEET_VERSION}, marker)
        try:
            os.rename(building, fleet)
        except OSError:  # built meanwhile by another run
            if not os.path.exists(os.path.join(fleet, "complete")):
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    ctx.progress(f"[startup] built in {time.monotonic() - begin:.1f}s")
    return storage


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_config(base: str, storage: str, port: int, log_level: str) -> str:
    runtime = os.path.join(base, "run")
    os.makedirs(runtime, exist_ok=True)
    config = os.path.join(base, "config.toml")
    with open(config, "w", encoding="utf-8") as out:
        out.write(
            f"""socket_path = "{base}/gitaly.socket"
listen_addr = "127.0.0.1:0"
prometheus_listen_addr = "127.0.0.1:{port}"
runtime_dir = "{runtime}"
graceful_restart_timeout = "5s"

[[storage]]
name = "{STORAGE}"
path = "{storage}"

[logging]
format = "json"
level = "{log_level}"
"""
        )
    return config


def ready(port: int) -> bool:
    """Whether `GET /readyz` answers 200 (False while refused, or 503 "starting")."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = b""
            while b"\r\n" not in head:
                chunk = conn.recv(256)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return False
    return head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))


def started_duration_ms(log_path: str) -> float | None:
    """The `duration_ms` of the server's "Started trio-gitaly" line."""
    with contextlib.suppress(OSError), open(log_path, "rb") as log:
        for raw in log:
            if b"Started trio-gitaly" not in raw:
                continue
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if entry.get("msg") == "Started trio-gitaly" and "duration_ms" in entry:
                    return float(entry["duration_ms"])
    return None


def cold_start(variant: Variant, workdir: str, log_level: str, run: str) -> dict[str, Any]:
    """Spawn the server on `variant`'s storage, time it to ready, stop it, time the stop."""
    base = os.path.join(workdir, variant.key)
    os.makedirs(base, exist_ok=True)
    port = free_port()
    config = write_config(base, variant.storage, port, log_level)
    log_path = os.path.join(base, f"{run}.log")
    argv = python_argv("-m", "trio_gitaly", "run", "--config", config)
    env = child_env()
    polls = 0
    with open(log_path, "wb") as log:
        begin = time.perf_counter()
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            start_new_session=True, env=env,
        )  # fmt: skip
    try:
        deadline = begin + READY_TIMEOUT_S
        while True:
            polls += 1
            if ready(port):
                ready_s = time.perf_counter() - begin
                break
            if process.poll() is not None:
                raise ServerError(
                    f"trio-gitaly ({variant.label}) exited with status {process.returncode}"
                    f"\n{log_tail(log_path)}"
                )
            if time.perf_counter() > deadline:
                raise ServerError(
                    f"trio-gitaly ({variant.label}) not ready in {READY_TIMEOUT_S:g}s"
                    f"\n{log_tail(log_path)}"
                )
            time.sleep(POLL_S)
        stopping = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=STOP_TIMEOUT_S)
            stop_s: float | None = time.perf_counter() - stopping
        except subprocess.TimeoutExpired:
            status, stop_s = None, None
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
        # The server's own process group: git processes it may have left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return {
        "ready_ms": ready_s * 1000,
        "server_ms": started_duration_ms(log_path),
        "stop_ms": None if stop_s is None else stop_s * 1000,
        "exit_status": status,
        "polls": polls,
        "log": log_path,
    }


def metric(
    stat: str, name: str, baseline: Variant, candidate: Variant, target: Target | None
) -> Metric:
    out = Metric(
        id=f"startup/{candidate.key}/{stat}",
        suite="startup",
        repo=f"{candidate.repositories:,} vs {baseline.repositories} repos",
        name=name,
        unit="ms",
        baseline=baseline.label,
        candidate=candidate.label,
        ratio="candidate/baseline",
        better="lower",
        target=target,
    )
    mine, theirs = candidate.values.get(stat, {}), baseline.values.get(stat, {})
    rounds = sorted(set(mine) & set(theirs))
    out.candidate_values = [mine[r] for r in rounds]
    out.baseline_values = [theirs[r] for r in rounds]
    if not rounds:
        out.status, out.note = "error", f"no round measured both ({stat})"
    return out


def run(ctx: Context) -> SuiteResult:
    result = SuiteResult()
    mode = ctx.settings.mode
    count = REPOSITORIES[mode]
    rounds = ctx.settings.rounds
    empty_storage = os.path.join(ctx.workdir, "empty-storage")
    os.makedirs(empty_storage)
    fleet_storage = ensure_fleet(cache_root(ctx), count, ctx)
    baseline = Variant("empty", "0 repositories", empty_storage, 0)
    candidate = Variant("fleet", f"{count:,} repositories", fleet_storage, count)
    variants = [baseline, candidate]

    def sample(variant: Variant, round_: int | None, answer: dict[str, Any]) -> None:
        result.samples.append(
            {
                "suite": "startup", "repo": "storage", "variant": variant.key,
                "kind": "start", "round": round_, "repositories": variant.repositories,
                **{k: v for k, v in answer.items() if k != "log"},
            }
        )  # fmt: skip

    for variant in variants:  # untimed: a warm page cache, the metadata file written
        sample(variant, None, cold_start(variant, ctx.workdir, ctx.log_level, "warmup"))
    for round_ in range(rounds):
        ctx.progress(f"[startup] round {round_ + 1}/{rounds}")
        for variant in rotation(variants, round_):
            answer = cold_start(variant, ctx.workdir, ctx.log_level, f"round-{round_}")
            sample(variant, round_, answer)
            for stat in ("ready_ms", "server_ms", "stop_ms"):
                if answer[stat] is not None:
                    variant.values.setdefault(stat, {})[round_] = answer[stat]

    result.metrics += [
        metric("ready_ms", "time to ready (spawn → /readyz 200)", baseline, candidate,
               READY_TARGET),
        metric("server_ms", "server-reported start (\"Started\" duration_ms)", baseline,
               candidate, None),
        metric("stop_ms", "stop (SIGTERM → exit)", baseline, candidate, None),
    ]  # fmt: skip
    result.notes.append(
        f"{rounds} rounds of one cold start each, interleaved; candidate storage: "
        f"{count:,} bare repositories under @hashed/ab/cd/<sha256>.git; /readyz polled every "
        f"{POLL_S * 1000:g} ms"
    )
    return result


SUITE = Suite(
    name="startup",
    summary="time to ready with 10,000 repositories ÷ with 0 (cold starts, /readyz)",
    run=run,
)

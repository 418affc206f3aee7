"""The benchmark harness runs end to end (tiny mode) and writes results of the right shape.

No figure is checked: timings belong to `./dev bench`, never to assertions in tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STATUSES = {"ok", "unavailable", "error"}


def run_harness(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "benchmarks", "--tiny",
            "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"), *args,
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def check_metrics(run: dict[str, Any]) -> None:
    """Every metric's shape: its status, its ratio kind, one value per round it measured."""
    most_rounds = max(
        run["settings"][key] for key in ("rounds", "transfer_rounds", "memory_rounds")
    )
    for metric in run["metrics"]:
        assert metric["status"] in STATUSES
        assert metric["ratio"] in ("candidate/baseline", "baseline/candidate", "candidate-baseline")
        assert metric["better"] in ("higher", "lower")
        if metric["status"] == "ok":
            rounds = len(metric["ratios"])
            assert 1 <= rounds <= most_rounds
            assert len(metric["baseline_values"]) == len(metric["candidate_values"]) == rounds
            summary = metric["summary"]
            assert summary["ratio_p25"] <= summary["ratio_median"] <= summary["ratio_p75"]
        else:
            assert metric["note"], "a metric that was not measured says why"


def test_tiny_run_writes_json_markdown_and_chart(tmp_path: Path) -> None:
    done = run_harness(tmp_path, "--suite", "rpc", "--suite", "catfile", "--suite", "startup")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    run: dict[str, Any] = json.loads((out / "latest.json").read_text())

    assert run["schema_version"] == 1
    assert run["mode"] == "tiny"
    assert {"cores", "python", "git", "loadavg_start", "trio_gitaly"} <= run["machine"].keys()
    assert [repo["name"] for repo in run["repos"]] == ["tiny"]
    assert run["repos"][0]["commits"] > 0
    assert [(s["name"], s["status"]) for s in run["suites"]] == [
        ("rpc", "ok"), ("catfile", "ok"), ("startup", "ok"),
    ]  # fmt: skip

    metrics = {metric["id"]: metric for metric in run["metrics"]}
    assert len(metrics) == len(run["metrics"]), "metric ids are unique"
    check_metrics(run)

    # Both echo servers always answer: what our serving layer costs is always measured.
    for stat in ("p50_us", "p99_us", "rps"):
        assert metrics[f"rpc/tiny/echo_ours/{stat}"]["status"] == "ok"
    find_commit_rps = metrics["rpc/tiny/FindCommit/rps/echo_ours"]
    assert find_commit_rps["target"] == {"op": ">=", "value": 0.7}
    assert metrics["catfile/tiny/FindCommit/p50_us"]["target"] == {"op": ">=", "value": 10.0}
    ready = metrics["startup/fleet/ready_ms"]
    assert ready["status"] == "ok"
    assert ready["target"] == {"op": "<=", "value": 1.1}

    kinds = {(s.get("variant"), s["kind"]) for s in run["samples"]}
    assert {("echo_ours", "latency"), ("echo_purerpc", "rate"), ("spawn", "latency")} <= kinds
    assert {("empty", "start"), ("fleet", "start")} <= kinds
    latency = next(
        s for s in run["samples"] if s.get("variant") == "echo_ours" and s["kind"] == "latency"
    )
    assert latency["latencies_us"]
    assert not latency["errors"]
    round_samples = [s for s in run["samples"] if s["kind"] == "latency" and "variant" not in s]
    assert round_samples
    assert {"variants", "server_cpu_s", "client_cpu_s"} <= round_samples[0].keys()

    markdown = (out / "latest.md").read_text()
    assert "| suite | repo | metric | baseline | candidate |" in markdown
    assert "FindCommit calls/s @4 ÷ our echo" in markdown
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert (out / "latest.png").exists() == has_matplotlib
    assert "FindCommit" in done.stdout  # the terminal table


def test_tiny_transfer_suites_clone_push_and_watch_memory(tmp_path: Path) -> None:
    # One round: plumbing, not figures.
    suites = ("--suite", "clone", "--suite", "push", "--suite", "memory")
    done = run_harness(tmp_path, *suites, "--rounds", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    run: dict[str, Any] = json.loads((out / "latest.json").read_text())
    assert [(s["name"], s["status"]) for s in run["suites"]] == [
        ("clone", "ok"), ("push", "ok"), ("memory", "ok"),
    ]  # fmt: skip
    check_metrics(run)
    metrics = {metric["id"]: metric for metric in run["metrics"]}
    assert len(metrics) == len(run["metrics"]), "metric ids are unique"
    # Tiny mode moves the tiny repository: the medium one is never generated here.
    assert {metric["repo"] for metric in run["metrics"]} == {"tiny"}
    assert not list((tmp_path / "cache" / "repos").glob("medium-*"))

    # Both transports of the server against git alone, in the same run.
    for key in ("clone/tiny/ssh/wall_s", "clone/tiny/http/wall_s"):
        assert metrics[key]["status"] == "ok", metrics[key]["note"]
        assert metrics[key]["target"] == {"op": "<=", "value": 1.05}
        assert metrics[key]["baseline"] == "git clone --no-local"
    # The target compares like with like: git's work configured as the server does it.
    assert metrics["push/tiny/ssh/wall_s/fsck"]["target"] == {"op": "<=", "value": 1.1}
    for key in ("push/tiny/ssh/wall_s", "push/tiny/http/wall_s", "push/tiny/fsck/wall_s",
                "push/tiny/ssh/wall_s/fsck", "push/tiny/http/wall_s/fsck"):  # fmt: skip
        assert metrics[key]["status"] == "ok", metrics[key]["note"]

    # Memory: differences in MB, not ratios; the target bounds the growth.
    growth = metrics["memory/tiny/ssh/peak_mb"]
    assert growth["status"] == "ok", growth["note"]
    assert (growth["ratio"], growth["unit"]) == ("candidate-baseline", "MB")
    assert growth["target"] == {"op": "<=", "value": 50.0}
    assert growth["ratios"] == [
        c - b for b, c in zip(growth["baseline_values"], growth["candidate_values"], strict=True)
    ]
    assert growth["baseline_values"][0] > 10, "an idle server's RSS in MB"
    assert growth["summary"]["met"] is not None
    assert metrics["memory/tiny/server/warm_mb"]["status"] == "ok"

    samples = run["samples"]
    kinds = {(s["suite"], s.get("variant"), s["kind"]) for s in samples}
    assert {
        ("clone", "direct", "clone"), ("clone", "ssh", "clone"), ("clone", "http", "clone"),
        ("push", "direct", "push"), ("push", "ssh", "push"), ("push", "http", "push"),
        ("memory", "server", "idle"), ("memory", "ssh", "parallel_clones"),
    } <= kinds  # fmt: skip
    assert all(s["refs_ok"] for s in samples if "refs_ok" in s)
    pushes = [s for s in samples if s["kind"] == "push" and s["variant"] == "ssh"]
    assert all(s["hook_calls"] > 0 for s in pushes), "pushes through the server run our hooks"
    parallel = next(s for s in samples if s["kind"] == "parallel_clones")
    assert parallel["clones"] == 8
    assert parallel["series_mb"] and not parallel["errors"]

    markdown = (out / "latest.md").read_text()
    assert "clone via trio-gitaly ssh ÷ direct clone" in markdown
    assert "≤ 50 MB" in markdown
    assert " MB |" in markdown  # a difference, shown in its unit


def test_tiny_overload_refuses_the_excess_and_completes_the_admitted(tmp_path: Path) -> None:
    done = run_harness(tmp_path, "--suite", "overload", "--rounds", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    run: dict[str, Any] = json.loads((tmp_path / "out" / "latest.json").read_text())
    assert [(s["name"], s["status"]) for s in run["suites"]] == [("overload", "ok")]
    check_metrics(run)
    metrics = {metric["id"]: metric for metric in run["metrics"]}
    assert len(metrics) == len(run["metrics"]), "metric ids are unique"
    for key in metrics:
        assert metrics[key]["status"] == "ok", (key, metrics[key]["note"])

    refusal = metrics["overload/tiny/grpc/refusal_max_ms"]
    assert (refusal["ratio"], refusal["unit"]) == ("candidate-baseline", "ms")
    assert refusal["target"] == {"op": "<=", "value": 100.0}
    assert refusal["baseline_values"] == [0.0]
    # Admitted streams hold their slots: exactly limit + queue (2 + 1) get in, 17 are refused.
    completed = metrics["overload/tiny/grpc/completed"]
    assert (completed["baseline_values"], completed["candidate_values"]) == ([3], [3])
    assert metrics["overload/tiny/grpc/refused"]["candidate_values"] == [17]
    assert metrics["overload/tiny/ssh/completed"]["target"] == {"op": ">=", "value": 1.0}
    assert metrics["overload/tiny/ssh/completed"]["summary"]["met"] is True
    dropped = metrics["overload/tiny/metrics/dropped"]
    assert dropped["candidate_values"] == dropped["baseline_values"], "/metrics counts them all"

    bursts = {s["variant"]: s for s in run["samples"] if s["kind"] == "burst"}
    assert bursts.keys() == {"grpc", "ssh"}
    assert not bursts["grpc"]["errors"] and not bursts["ssh"]["errors"]
    assert len(bursts["grpc"]["server_refused_ms"]) == 17, "the access log shows each refusal"
    assert len(bursts["ssh"]["refused_ms"]) + len(bursts["ssh"]["admitted_ms"]) == 20
    for sample in bursts.values():
        assert sample["metrics_after"]["in_progress"] == sample["metrics_after"]["queued"] == 0


def test_list_names_the_suites(tmp_path: Path) -> None:
    done = run_harness(tmp_path, "--list")
    assert done.returncode == 0, done.stderr
    for name in ("rpc", "catfile", "startup", "clone", "push", "memory", "overload"):
        assert f"{name}:" in done.stdout
    assert "(planned)" not in done.stdout


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if text.encode() in cmdline:
            pids.append(int(entry))
    return pids


def test_sigterm_stops_the_servers_the_harness_started(tmp_path: Path) -> None:
    workdir_root = tmp_path / "tmp"
    workdir_root.mkdir()
    harness = subprocess.Popen(
        [
            sys.executable, "-m", "benchmarks", "--tiny", "--suite", "startup",
            "--cache-dir", str(tmp_path / "cache"), "--output", str(tmp_path / "out"),
        ],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(workdir_root)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not _processes_mentioning(f"{workdir_root}/") or harness.poll() is not None:
            assert harness.poll() is None, "the harness ended before starting a server"
            assert time.monotonic() < deadline, "no server started"
            time.sleep(0.05)
        harness.send_signal(signal.SIGTERM)
        assert harness.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if harness.poll() is None:
            harness.kill()
    assert _processes_mentioning(f"{workdir_root}/") == []

"""The benchmark harness runs end to end (tiny mode) and writes results of the right shape.

No figure is checked: timings belong to `./dev bench`, never to assertions in tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
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


def test_tiny_run_writes_json_markdown_and_chart(tmp_path: Path) -> None:
    done = run_harness(tmp_path)
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
    for metric in run["metrics"]:
        assert metric["status"] in STATUSES
        assert metric["ratio"] in ("candidate/baseline", "baseline/candidate")
        assert metric["better"] in ("higher", "lower")
        if metric["status"] == "ok":
            rounds = len(metric["ratios"])
            assert 1 <= rounds <= run["settings"]["rounds"]
            assert len(metric["baseline_values"]) == len(metric["candidate_values"]) == rounds
            summary = metric["summary"]
            assert summary["ratio_p25"] <= summary["ratio_median"] <= summary["ratio_p75"]
        else:
            assert metric["note"], "a metric that was not measured says why"

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


def test_list_names_the_suites(tmp_path: Path) -> None:
    done = run_harness(tmp_path, "--list")
    assert done.returncode == 0, done.stderr
    assert "rpc:" in done.stdout
    assert "catfile:" in done.stdout
    assert "startup:" in done.stdout
    assert "clone (planned)" in done.stdout

"""`python -m benchmarks`: run the suites, print the table, write the results.

    python -m benchmarks [--quick | --full] [--repo PATH ...] [--suite NAME ...]
                         [--rounds N] [--output DIR] [--cache-dir DIR] [--log-level LEVEL]
                         [--no-chart] [--keep-workdir]
    python -m benchmarks --list               # the suites, and those still planned
    python -m benchmarks --render FILE.json   # the table, markdown and chart again

Quick mode (the default) runs on the small generated repository; full mode on the small
and the medium ones, with more rounds and longer windows; the clone, push and memory
suites move whole repositories, so they run on the medium one in both modes, with fewer
rounds in quick mode; `--repo PATH` (repeatable) runs every suite on existing
repositories instead. Results: benchmarks/results/latest.{json,md,png}.
Exit status 0 when every suite ran (targets met or not), 1 when a suite failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

from rich.console import Console

from benchmarks import report, suites
from benchmarks.core import MODES, Context
from benchmarks.repos import SHAPES, RepoInfo, ensure, inspect

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(HERE, "results")
DEFAULT_CACHE = os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "trio-gitaly-bench"
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="trio-gitaly benchmarks: ratios against baselines measured in the same run.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick")
    mode.add_argument("--full", dest="mode", action="store_const", const="full")
    mode.add_argument(
        "--tiny", dest="mode", action="store_const", const="tiny",
        help="seconds, meaningless figures: for the harness's own test",
    )  # fmt: skip
    parser.add_argument(
        "--repo", action="append", default=[], metavar="PATH",
        help="run on this existing repository instead of generated ones (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--suite", action="append", default=[], metavar="NAME", choices=suites.AVAILABLE,
        help=f"run only these suites (repeatable; default all: {', '.join(suites.AVAILABLE)})",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, help="override the mode's number of rounds")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR")
    parser.add_argument(
        "--cache-dir", default=os.environ.get("TRIO_GITALY_BENCH_CACHE", DEFAULT_CACHE),
        metavar="DIR", help="where generated repositories are kept (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warn", "error"),
        help="the servers' log level (default info: one access-log line per call, as deployed)",
    )  # fmt: skip
    parser.add_argument("--no-chart", action="store_true", help="do not draw latest.png")
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep server logs and configs after the run"
    )
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument("--render", metavar="FILE", help="render a saved JSON file and exit")
    args = parser.parse_args(argv)
    args.mode = args.mode or "quick"
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM's default action ends the process at once: the servers the suites started
    # (their own sessions) would outlive it. As SystemExit, every `finally` stops its own.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse(argv)
    console = Console(stderr=True, log_path=False)
    # Piped (a log, CI): wide enough that the table's rows stay on one line.
    out = Console() if sys.stdout.isatty() else Console(width=200)
    if args.list:
        for name in suites.AVAILABLE:
            out.print(f"[bold]{name}[/bold]: {suites.load(name).summary}")
        for name, summary in suites.PLANNED.items():
            out.print(f"[dim]{name} (planned): {summary}[/dim]")
        return 0
    if args.render:
        import json

        with open(args.render, encoding="utf-8") as saved:
            run = json.load(saved)
        write_outputs(run, args, out)
        return 0

    settings = MODES[args.mode]
    if args.rounds is not None:
        settings = dataclasses.replace(
            settings, rounds=args.rounds, transfer_rounds=args.rounds, memory_rounds=args.rounds
        )
    started = datetime.datetime.now(datetime.UTC)
    load_start = os.getloadavg()
    repos = prepare_repos(args, settings.repos, console)
    workdir = tempfile.mkdtemp(prefix="tgb-")
    chosen = args.suite or list(suites.AVAILABLE)
    suite_records: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    try:
        for name in suites.AVAILABLE:
            if name not in chosen:
                continue
            suite = suites.load(name)
            suite_dir = os.path.join(workdir, name)
            os.makedirs(suite_dir)
            ctx = Context(
                settings=settings, repos=repos, workdir=suite_dir, log_level=args.log_level,
                console=console, cache_dir=args.cache_dir,
            )  # fmt: skip
            console.rule(f"suite {name}: {suite.summary}")
            begin = time.monotonic()
            record: dict[str, Any] = {"name": name, "summary": suite.summary, "notes": []}
            try:
                result = suite.run(ctx)
            except Exception as exc:
                console.print(traceback.format_exc(), markup=False, highlight=False)
                record.update(status="error", error=f"{type(exc).__name__}: {exc}")
            else:
                record.update(status="ok", error="", notes=result.notes)
                metrics += [metric.to_json() for metric in result.metrics]
                samples += result.samples
            record["duration_s"] = round(time.monotonic() - begin, 1)
            suite_records.append(record)
    finally:
        if args.keep_workdir:
            console.print(f"server logs and configs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    finished = datetime.datetime.now(datetime.UTC)
    run = report.sanitize(
        {
            "schema_version": 1,
            "started": started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "duration_s": round((finished - started).total_seconds(), 1),
            "mode": settings.mode,
            "settings": dataclasses.asdict(settings),
            "log_level": args.log_level,
            "machine": machine(load_start),
            "repos": [repo.describe() for repo in repos],
            "suites": suite_records,
            "metrics": metrics,
            "samples": samples,
        }
    )
    write_outputs(run, args, out)
    return 0 if all(record["status"] == "ok" for record in suite_records) else 1


def prepare_repos(
    args: argparse.Namespace, shapes: tuple[str, ...], console: Console
) -> list[RepoInfo]:
    if args.repo:
        repos: list[RepoInfo] = []
        for path in args.repo:
            name = os.path.basename(os.path.normpath(path)).removesuffix(".git") or "repo"
            while any(repo.name == name for repo in repos):
                name += "-2"
            repos.append(inspect(name, path))
        return repos
    result = []
    for name in shapes:
        shape = SHAPES[name]
        with console.status(f"repository {name}"):
            path = ensure(shape, args.cache_dir)
        result.append(inspect(name, path, shape))
    return result


def machine(load_start: tuple[float, float, float]) -> dict[str, Any]:
    from trio_gitaly import __version__

    root = os.path.dirname(HERE)

    def output(*argv: str) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, cwd=root, check=True)
        except (OSError, subprocess.CalledProcessError):
            return ""
        return done.stdout.strip()

    commit = output("git", "rev-parse", "--short", "HEAD") or "unknown"
    if output("git", "status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    return {
        "cores": os.cpu_count(),
        "platform": f"{platform.system()} {platform.machine()}",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git": output("git", "--version").removeprefix("git version "),
        "loadavg_start": list(load_start),
        "loadavg_end": list(os.getloadavg()),
        "trio_gitaly": {"version": __version__, "commit": commit},
    }


def write_outputs(run: dict[str, Any], args: argparse.Namespace, out: Console) -> None:
    os.makedirs(args.output, exist_ok=True)
    png = os.path.join(args.output, "latest.png")
    chart_name: str | None = None
    if not args.no_chart:
        skipped = report.chart(run, png)
        if skipped:
            out.print(f"no chart: {skipped}", markup=False)
        else:
            chart_name = "latest.png"
    written = ["md"]
    if args.render is None:
        report.write_json(run, os.path.join(args.output, "latest.json"))
        written.insert(0, "json")
    report.write_markdown(run, os.path.join(args.output, "latest.md"), chart_name)
    if chart_name:
        written.append("png")
    report.terminal(run, out)
    out.print(f"results in {args.output}/latest.{{{','.join(written)}}}", markup=False)


if __name__ == "__main__":
    sys.exit(main())

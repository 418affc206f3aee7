"""The suites: one module each, with `SUITE = Suite(name, summary, run)`.

`run(ctx: Context) -> SuiteResult` starts what it measures (benchmarks/servers.py: the
real server, the echo servers; or processes of its own) in `ctx.workdir`, measures
variants in interleaved rounds (benchmarks/measure.py, or its own loop over
`core.rotation`), and returns `Metric`s (each a candidate and a baseline with one value
per round, a ratio direction and an optional target) plus every raw sample. The CLI
runs the chosen suites in order, and report.py turns all metrics into the table, the
JSON file, the markdown and the chart; nothing there knows about any one suite.

Adding a suite: write `benchmarks/suites/<name>.py` with its `SUITE`, add the name to
`AVAILABLE` (and drop it from `PLANNED`).
"""

from __future__ import annotations

import importlib

from benchmarks.core import Suite

# In the order they run.
AVAILABLE = ("rpc", "catfile", "startup", "clone", "push", "memory", "overload")

# From the benchmarks issue, not written yet; `--list` shows them.
PLANNED: dict[str, str] = {}


def load(name: str) -> Suite:
    module = importlib.import_module(f"benchmarks.suites.{name}")
    suite: Suite = module.SUITE
    return suite

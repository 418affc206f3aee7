"""The load generator: a grpcio client in a process of its own, driven over a pipe.

The server under test must not share its GIL (or its CPU accounting) with the client,
so the client is a separate process: `LoadClient` (used by the suites) starts
`python -m benchmarks.load`, writes one JSON job per line to its stdin and reads one
JSON answer per line from its stdout. The worker keeps one grpcio (`grpc.aio`) channel
per target for its whole life.

Requests travel as serialized protobuf bytes and responses come back as bytes: the
worker never (de)serializes messages while timing, so its per-call cost is the same for
every variant. Only `probe` returns the answer messages, for the suite to check them.

Jobs (every answer also carries the worker's CPU time, `client_cpu_s`):
- probe:  one call; {"ok", "code", "details", "responses": [b64]}
- mixed:  latency at concurrency 1 of several entries (RPCs, or commands spawned per
          call), interleaved in blocks of `block` calls: A B C, B C A, C A B, ... so that
          whatever the machine does at that moment hits all of them alike. Each block
          starts with one untimed call (the switch from another entry, whose server was
          idle meanwhile): the timed calls are a client's steady sequence of requests.
          After `warmup` calls of each, `calls` timed calls of each; {"results":
          [{"latencies_us", "errors", "first_error"} per entry], "elapsed_s"}
- rate:   `concurrency` callers of one RPC for `warmup_s`, then a window of `window_s`;
          counts the calls that complete inside the window; {"calls", "window_s",
          "errors", "first_error", "p50_us", "p99_us"}
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.servers import child_env

CALL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Call:
    """One RPC to measure: its path, whether the answer streams, the requests to cycle."""

    method: str  # "/gitaly.CommitService/FindCommit"
    streaming: bool  # server-streaming answer (TreeEntry, GetBlob, ListRefs)
    requests: tuple[bytes, ...]

    def entry(self, target: str) -> dict[str, Any]:
        return {
            "kind": "grpc",
            "target": target,
            "method": self.method,
            "streaming": self.streaming,
            "requests": [base64.b64encode(r).decode() for r in self.requests],
        }


def spawn_entry(
    argvs: Sequence[Sequence[str]], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """A `mixed` entry whose every call runs a command (cycling `argvs`) to completion."""
    return {"kind": "spawn", "argvs": [list(argv) for argv in argvs], "env": env}


class LoadError(RuntimeError):
    """The load worker failed or died."""


class LoadClient:
    """The harness's end of the pipe to one load worker process."""

    def __init__(self, workdir: str) -> None:
        self.log_path = os.path.join(workdir, "load-client.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.load"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=child_env(),
            )

    def request(self, job: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.write(json.dumps(job).encode() + b"\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise LoadError(f"the load worker died:\n{_tail(self.log_path)}")
        answer: dict[str, Any] = json.loads(line)
        if "exception" in answer:
            raise LoadError(f"the load worker failed: {answer['exception']}")
        return answer

    def probe(self, target: str, call: Call) -> dict[str, Any]:
        answer = self.request({"op": "probe", **call.entry(target)})
        answer["responses"] = [base64.b64decode(r) for r in answer.get("responses", [])]
        return answer

    def mixed(
        self,
        entries: Sequence[dict[str, Any]],
        *,
        calls: int,
        warmup: int,
        max_s: float,
        block: int = 1,
    ) -> dict[str, Any]:
        job = {"op": "mixed", "entries": list(entries), "calls": calls, "warmup": warmup}
        return self.request({**job, "max_s": max_s, "block": block})

    def rate(
        self, target: str, call: Call, *, concurrency: int, window_s: float, warmup_s: float
    ) -> dict[str, Any]:
        job = {"op": "rate", **call.entry(target), "concurrency": concurrency}
        return self.request({**job, "window_s": window_s, "warmup_s": warmup_s})

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(LoadError, OSError, ValueError):
                self.request({"op": "quit"})
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> LoadClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tail(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return "".join(log.readlines()[-20:])
    except OSError:
        return ""


# -- the worker process ----------------------------------------------------------------


class _Outcome:
    """Latencies and failures of one entry (or one rate job)."""

    def __init__(self) -> None:
        self.latencies_us: list[float] = []
        self.errors: dict[str, int] = {}
        self.first_error = ""

    def failed(self, code: str, details: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1
        self.first_error = self.first_error or f"{code}: {details}"

    def to_json(self) -> dict[str, Any]:
        return {
            "latencies_us": self.latencies_us,
            "errors": self.errors,
            "first_error": self.first_error,
        }


class _Worker:
    def __init__(self) -> None:
        import grpc.aio

        self._aio = grpc.aio
        self._loop = asyncio.new_event_loop()
        self._channels: dict[str, Any] = {}

    def callable(self, entry: dict[str, Any]) -> Any:
        target = entry["target"]
        if target not in self._channels:
            self._channels[target] = self._aio.insecure_channel(target)
        channel = self._channels[target]
        # No serializers: requests go out as the bytes given, answers come back as bytes.
        if entry["streaming"]:
            return channel.unary_stream(entry["method"])
        return channel.unary_unary(entry["method"])

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        cpu = time.process_time()
        if job["op"] == "probe":
            answer = self._loop.run_until_complete(self.probe(job))
        elif job["op"] == "mixed":
            answer = self.mixed(job)
        elif job["op"] == "rate":
            answer = self._loop.run_until_complete(self.rate(job))
        else:
            raise ValueError(f"unknown job {job['op']!r}")
        answer["client_cpu_s"] = round(time.process_time() - cpu, 4)
        return answer

    async def one(self, method: Any, streaming: bool, request: bytes) -> list[bytes]:
        if streaming:
            return [chunk async for chunk in method(request, timeout=CALL_TIMEOUT_S)]
        return [await method(request, timeout=CALL_TIMEOUT_S)]

    async def timed(self, method: Any, streaming: bool, request: bytes) -> tuple[int, str, str]:
        """One call: (nanoseconds, "", "") or (0, code, details)."""
        begin = time.perf_counter_ns()
        try:
            await self.one(method, streaming, request)
        except self._aio.AioRpcError as error:
            return 0, error.code().name, error.details() or ""
        return time.perf_counter_ns() - begin, "", ""

    async def probe(self, job: dict[str, Any]) -> dict[str, Any]:
        method = self.callable(job)
        try:
            responses = await self.one(
                method, job["streaming"], base64.b64decode(job["requests"][0])
            )
        except self._aio.AioRpcError as error:
            return {"ok": False, "code": error.code().name, "details": error.details() or ""}
        return {
            "ok": True,
            "code": "OK",
            "details": "",
            "responses": [base64.b64encode(r).decode() for r in responses],
        }

    def mixed(self, job: dict[str, Any]) -> dict[str, Any]:
        """Interleaved latency of every entry, call by call (the loop is driven per call,
        so that a spawned command runs outside any event loop)."""
        entries: list[dict[str, Any]] = job["entries"]
        rpcs: dict[int, tuple[Any, bool, list[bytes]]] = {}
        spawns: dict[int, tuple[list[list[str]], dict[str, str]]] = {}
        for index, entry in enumerate(entries):
            if entry["kind"] == "grpc":
                requests = [base64.b64decode(r) for r in entry["requests"]]
                rpcs[index] = (self.callable(entry), entry["streaming"], requests)
            else:
                spawns[index] = (entry["argvs"], {**os.environ, **(entry.get("env") or {})})
        outcomes = [_Outcome() for _ in entries]

        def call(index: int, number: int, record: bool) -> None:
            if index in spawns:
                argvs, env = spawns[index]
                begin = time.perf_counter_ns()
                done = subprocess.run(
                    argvs[number % len(argvs)], capture_output=True, env=env, check=False
                )
                elapsed = time.perf_counter_ns() - begin
                code = f"exit {done.returncode}" if done.returncode else ""
                details = done.stderr.decode(errors="replace")[:200]
            else:
                method, streaming, requests = rpcs[index]
                coroutine = self.timed(method, streaming, requests[number % len(requests)])
                elapsed, code, details = self._loop.run_until_complete(coroutine)
            if code:
                outcomes[index].failed(code, details)
            elif record:
                outcomes[index].latencies_us.append(round(elapsed / 1000, 1))

        order = list(range(len(entries)))
        for number in range(job["warmup"]):
            for index in order:
                call(index, number, record=False)
        for outcome in outcomes:  # warm-up failures are not the measurement's
            outcome.errors.clear()
            outcome.first_error = ""
        block = max(1, job.get("block", 1))
        start = time.perf_counter()
        done = 0
        turn = 0
        while done < job["calls"] and time.perf_counter() - start <= job["max_s"]:
            size = min(block, job["calls"] - done)
            shift = turn % len(order)
            for index in order[shift:] + order[:shift]:
                if block > 1:  # the switch from another entry: its server was idle
                    call(index, done, record=False)
                for number in range(done, done + size):
                    call(index, number, record=True)
            done += size
            turn += 1
        return {
            "results": [outcome.to_json() for outcome in outcomes],
            "elapsed_s": round(time.perf_counter() - start, 3),
        }

    async def rate(self, job: dict[str, Any]) -> dict[str, Any]:
        method, streaming = self.callable(job), job["streaming"]
        requests = [base64.b64decode(r) for r in job["requests"]]
        outcome = _Outcome()
        completed = 0
        latencies: list[float] = []
        window_start = time.perf_counter() + job["warmup_s"]
        window_end = window_start + job["window_s"]
        concurrency = job["concurrency"]

        async def caller(index: int) -> None:
            nonlocal completed
            while True:
                begin = time.perf_counter()
                if begin >= window_end:
                    return
                request = requests[index % len(requests)]
                index += concurrency
                try:
                    await self.one(method, streaming, request)
                except self._aio.AioRpcError as error:
                    outcome.failed(error.code().name, error.details() or "")
                    continue
                end = time.perf_counter()
                if window_start <= end < window_end:
                    completed += 1
                    latencies.append(end - begin)

        await asyncio.gather(*(caller(i) for i in range(concurrency)))
        latencies.sort()
        return {
            "calls": completed,
            "window_s": job["window_s"],
            "errors": outcome.errors,
            "first_error": outcome.first_error,
            "p50_us": round(_pick(latencies, 0.50) * 1e6, 1),
            "p99_us": round(_pick(latencies, 0.99) * 1e6, 1),
        }

    def close(self) -> None:
        for channel in self._channels.values():
            self._loop.run_until_complete(channel.close())
        self._loop.close()


def _pick(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    worker = _Worker()
    out = sys.stdout
    try:
        for line in sys.stdin:
            job = json.loads(line)
            if job["op"] == "quit":
                out.write("{}\n")
                out.flush()
                break
            try:
                answer = worker.run(job)
            except Exception as exc:
                answer = {"exception": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(answer) + "\n")
            out.flush()
    finally:
        worker.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"load worker done, cpu {usage.ru_utime + usage.ru_stime:.1f}s", file=sys.stderr)


if __name__ == "__main__":
    main()

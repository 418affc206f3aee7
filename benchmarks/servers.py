"""The servers under test, each its own process on an ephemeral loopback port.

- `trio_gitaly(...)`: the real server, `python -m trio_gitaly run --config <tmp>`, with a
  storage in a temporary directory whose repositories are symlinks to the benchmark
  repositories (the locator checks containment lexically, as Gitaly does).
- `echo_ours(...)`: benchmarks/echo_ours.py, an echo route served by trio-gitaly's own
  gRPC layer and middleware chain.
- `echo_purerpc(...)`: benchmarks/echo_purerpc.py, the same echo on a bare purerpc Server.

Each writes its log (stderr) to a file in the run's scratch directory and announces its
TCP address with a JSON line `{"msg": "listening at address", "schema": "tcp", ...}`, as
trio-gitaly itself does; the harness waits for that line. Every process gets its own
session (process group), so stopping it also ends the git processes it spawned.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ServerError(RuntimeError):
    """A server did not start, or died; the message carries the end of its log."""


@dataclass
class ServerProcess:
    name: str
    address: str  # "127.0.0.1:port"
    process: subprocess.Popen[bytes]
    log_path: str
    socket: str = ""  # trio-gitaly's unix socket
    gateway: str = ""  # trio-gitaly's HTTP gateway, "127.0.0.1:port", when enabled

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process itself (not its children)."""
        try:
            with open(f"/proc/{self.pid}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def rss_bytes(self) -> int:
        """Resident memory of the server process (for suites that watch memory)."""
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            status, tail = self.process.returncode, log_tail(self.log_path)
            raise ServerError(f"{self.name} exited with status {status}\n{tail}")

    def logged_errors(self) -> int:
        """How many error-level lines the server logged, UNIMPLEMENTED answers aside."""
        count = 0
        with contextlib.suppress(OSError), open(self.log_path, "rb") as log:
            for line in log:
                if b'"level":"error"' in line or b'"level":"fatal"' in line:
                    count += b"with code Unimplemented" not in line
        return count


def log_tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 8192))
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _announced_address(path: str) -> str | None:
    try:
        with open(path, "rb") as log:
            for raw in log:
                if b"listening at address" not in raw:
                    continue
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if entry.get("msg") == "listening at address" and entry.get("schema") == "tcp":
                    return str(entry["address"])
    except OSError:
        return None
    return None


@contextlib.contextmanager
def server_process(
    name: str, argv: list[str], workdir: str, *, timeout_s: float = 60.0
) -> Iterator[ServerProcess]:
    """Start `argv`, wait for its TCP address in its log, stop it (SIGTERM, then SIGKILL)."""
    log_path = os.path.join(workdir, f"{name}.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
            env=child_env(),
        )
    server = ServerProcess(name=name, address="", process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            address = _announced_address(log_path)
            if address is not None:
                server.address = address
                break
            server.check_alive()
            if time.monotonic() > deadline:
                raise ServerError(f"{name} did not start in {timeout_s:g}s\n{log_tail(log_path)}")
            time.sleep(0.05)
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    # The server's own process group: git processes it may have left behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def child_env() -> dict[str, str]:
    """The environment of our child processes: `benchmarks` importable from anywhere."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


@contextlib.contextmanager
def trio_gitaly(
    workdir: str,
    repositories: Mapping[str, str],
    *,
    log_level: str = "info",
    gateway_port: int | None = None,
    metrics_port: int | None = None,
    extra_config: str = "",
) -> Iterator[ServerProcess]:
    """The real server; `repositories` maps relative path (in storage "default") to a git dir.

    A symlink's target need not exist yet (a suite may create it later, e.g. an empty
    repository to push into). `gateway_port`: serve the HTTP gateway on that loopback port;
    `metrics_port`: serve /metrics there (prometheus_listen_addr); `extra_config`: TOML
    tables appended to the config (`[[concurrency]]` ...).
    """
    base = os.path.join(workdir, "tg")
    storage = os.path.join(base, "storage")
    runtime = os.path.join(base, "run")
    os.makedirs(runtime, exist_ok=True)
    for relative, target in repositories.items():
        link = os.path.join(storage, relative)
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(target, link)
    config = os.path.join(base, "config.toml")
    metrics = "" if metrics_port is None else f"127.0.0.1:{metrics_port}"
    with open(config, "w", encoding="utf-8") as out:
        out.write(
            f"""socket_path = "{base}/gitaly.socket"
listen_addr = "127.0.0.1:0"
prometheus_listen_addr = "{metrics}"
runtime_dir = "{runtime}"
graceful_restart_timeout = "5s"

[[storage]]
name = "default"
path = "{storage}"

[logging]
format = "json"
level = "{log_level}"
"""
        )
        if gateway_port is not None:
            out.write(f'\n[gateway]\nlisten_addr = "127.0.0.1:{gateway_port}"\n')
        out.write(extra_config)
    with server_process(
        "trio-gitaly", python_argv("-m", "trio_gitaly", "run", "--config", config), workdir
    ) as server:
        server.socket = os.path.join(base, "gitaly.socket")
        if gateway_port is not None:
            server.gateway = f"127.0.0.1:{gateway_port}"
        yield server


@contextlib.contextmanager
def echo_ours(workdir: str, *, log_level: str = "info") -> Iterator[ServerProcess]:
    """The echo route on trio-gitaly's gRPC layer and middleware chain."""
    argv = python_argv("-m", "benchmarks.echo_ours", "--log-level", log_level)
    with server_process("echo-ours", argv, workdir) as server:
        yield server


@contextlib.contextmanager
def echo_purerpc(workdir: str) -> Iterator[ServerProcess]:
    """The echo on a bare purerpc 0.8 Server."""
    with server_process("echo-purerpc", python_argv("-m", "benchmarks.echo_purerpc"), workdir) as s:
        yield s

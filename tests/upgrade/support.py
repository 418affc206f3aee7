"""Harness for graceful-restart tests: a real server chain, a load of RPCs, a slow clone.

`ServerChain` runs `trio-gitaly run --pid-file` under supervisor.py (a subreaper), so that
every process of the chain of restarts reports its exit status. `Load` runs grpcio
clients in threads, over TCP and the unix socket, and records every failure. `slow_clone`
starts `git clone` over `trio-gitaly ssh`, throttled to stay in flight for seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from tests.repos import GIT_ENV, FastImport
from trio_gitaly.rpc.gen.gitaly import repository_pb2, server_pb2, shared_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Starting a process (Python imports, git detection) takes about half a second; the
# machine running the tests may be busy with other work.
READY_TIMEOUT_S = 30.0
# Clients only retry what the server refused or never saw: a real failure stays one.
CALL_TIMEOUT_S = 10.0
# Long enough for the slow clone to finish while the old process drains.
GRACE = "10s"


def write_config(base: str, *, tls: tuple[str, str] | None = None) -> str:
    """A config with a unix socket, TCP, HTTP and gateway listeners on ephemeral ports;
    with `tls` (certificate and key files), a TLS listener too."""
    for directory in ("run", "storage"):
        os.makedirs(os.path.join(base, directory), exist_ok=True)
    path = os.path.join(base, "config.toml")
    with open(path, "w", encoding="utf-8") as config:
        config.write(config_text(base, tls=tls))
    return path


def config_text(base: str, *, tls: tuple[str, str] | None = None) -> str:
    """The text `write_config` writes."""
    tls_keys = "" if tls is None else 'tls_listen_addr = "127.0.0.1:0"'
    tls_table = (
        "" if tls is None else f'[tls]\ncertificate_path = "{tls[0]}"\nkey_path = "{tls[1]}"'
    )
    return f"""
socket_path = "{base}/gitaly.socket"
listen_addr = "127.0.0.1:0"
prometheus_listen_addr = "127.0.0.1:0"
runtime_dir = "{base}/run"
graceful_restart_timeout = "{GRACE}"
{tls_keys}
[gateway]
listen_addr = "127.0.0.1:0"
[[storage]]
name = "default"
path = "{base}/storage"
[logging]
format = "json"
{tls_table}
"""


class ServerChain:
    """`trio-gitaly run` and the successors its restarts start, under one subreaper."""

    def __init__(self, base: str, config: str) -> None:
        self.base = base
        self.pid_file = os.path.join(base, "trio-gitaly.pid")
        self.log_path = os.path.join(base, "server.log")
        self.report = os.path.join(base, "reaped")
        command = [sys.executable, "-m", "trio_gitaly", "run", "--config", config]
        command += ["--pid-file", self.pid_file]
        with open(self.log_path, "ab") as log:
            self.supervisor = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "supervisor.py"), self.report, *command],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        self.pid = self.wait_ready()

    def wait_ready(self, previous: int | None = None, timeout_s: float = READY_TIMEOUT_S) -> int:
        """Wait until the pid file names a process other than `previous`; return its pid."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pid = read_pid(self.pid_file)
            if pid is not None and pid != previous:
                return pid
            if self.supervisor.poll() is not None:
                raise AssertionError(f"every server exited:\n{self.log_tail()}")
            time.sleep(0.02)
        raise AssertionError(f"no new pid within {timeout_s}s:\n{self.log_tail()}")

    def upgrade(self) -> int:
        """SIGHUP the serving process, wait for its successor to be ready; return the new pid."""
        old = self.pid
        os.kill(old, signal.SIGHUP)
        self.pid = self.wait_ready(previous=old)
        return self.pid

    def logs(self, pid: int | None = None) -> list[dict[str, Any]]:
        """The JSON log lines so far (of one process, given its pid)."""
        entries = []
        with open(self.log_path, "rb") as log:
            for line in log:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if pid is None or entry.get("pid") == pid:
                    entries.append(entry)
        return entries

    def wait_log(
        self, msg: str, pid: int | None = None, timeout_s: float = READY_TIMEOUT_S
    ) -> dict[str, Any]:
        """The first log line with `msg` (of `pid`), once it is there."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for entry in self.logs(pid):
                if entry.get("msg") == msg:
                    return entry
            time.sleep(0.02)
        raise AssertionError(f"no {msg!r} logged within {timeout_s}s:\n{self.log_tail()}")

    def address(self, schema: str, pid: int | None = None) -> str:
        """Where the chain (or process `pid`) listens; inherited sockets keep their address."""
        return next(
            str(entry["address"])
            for entry in self.logs(pid)
            if entry.get("msg") == "listening at address" and entry.get("schema") == schema
        )

    def exit_code(self, pid: int, timeout_s: float = READY_TIMEOUT_S) -> int:
        """The exit code of a process of the chain, once it exited."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError), open(self.report, encoding="ascii") as f:
                for line in f:
                    reaped, code = line.split()
                    if int(reaped) == pid:
                        return int(code)
            time.sleep(0.02)
        raise AssertionError(f"process {pid} did not exit within {timeout_s}s")

    def alive(self, pid: int) -> bool:
        """Whether `pid` is still running (not exited, not a zombie)."""
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        with open(self.log_path, "rb") as log:
            text = log.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        """Stop whatever still runs: SIGTERM the server, SIGKILL what is left after a while."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.supervisor.wait(timeout=15)
        except subprocess.TimeoutExpired:
            for pid in {entry.get("pid") for entry in self.logs()}:
                if isinstance(pid, int):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            self.supervisor.kill()
            self.supervisor.wait()


@contextlib.contextmanager
def server_chain(base: str, config: str) -> Iterator[ServerChain]:
    """A running chain, stopped on exit."""
    chain = ServerChain(base, config)
    try:
        yield chain
    finally:
        chain.close()


def read_pid(path: str) -> int | None:
    """The pid a pid file names; None while it is missing."""
    try:
        with open(path, encoding="ascii") as pid_file:
            text = pid_file.read()
    except FileNotFoundError:
        return None
    return int(text)


@dataclass
class Load:
    """grpcio clients calling unary RPCs in a loop, one thread per (target, client)."""

    targets: dict[str, str]  # name -> grpc target
    repository: shared_pb2.Repository
    clients_per_target: int = 2
    successes: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for name, target in self.targets.items():
            for _ in range(self.clients_per_target):
                thread = threading.Thread(target=self._run, args=(name, target), daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CALL_TIMEOUT_S + 5)

    def count(self, name: str, since: float = 0.0) -> int:
        """Successful calls over target `name` that finished after `since` (monotonic)."""
        return sum(1 for at, target in list(self.successes) if target == name and at > since)

    def _run(self, name: str, target: str) -> None:
        with grpc.insecure_channel(target) as channel:
            calls: list[Callable[[], object]] = [
                lambda: channel.unary_unary(
                    "/gitaly.ServerService/ServerInfo",
                    request_serializer=server_pb2.ServerInfoRequest.SerializeToString,
                    response_deserializer=server_pb2.ServerInfoResponse.FromString,
                )(server_pb2.ServerInfoRequest(), timeout=CALL_TIMEOUT_S),
                lambda: channel.unary_unary(
                    "/gitaly.RepositoryService/RepositoryExists",
                    request_serializer=repository_pb2.RepositoryExistsRequest.SerializeToString,
                    response_deserializer=repository_pb2.RepositoryExistsResponse.FromString,
                )(
                    repository_pb2.RepositoryExistsRequest(repository=self.repository),
                    timeout=CALL_TIMEOUT_S,
                ),
            ]
            index = 0
            while not self._stop.is_set():
                try:
                    calls[index % len(calls)]()
                except grpc.RpcError as exc:
                    self.failures.append(f"{name}: {exc.code()} {exc.details()}")
                else:
                    self.successes.append((time.monotonic(), name))
                index += 1


@contextlib.contextmanager
def load(chain: ServerChain, repository: shared_pb2.Repository) -> Iterator[Load]:
    """Unary calls over TCP and the unix socket until the block ends."""
    targets = {
        "tcp": chain.address("tcp"),
        "unix": f"unix:{chain.address('unix')}",
    }
    running = Load(targets, repository)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def medium_repository(path: str, *, blobs: int, blob_bytes: int) -> None:
    """A bare repository of incompressible blobs (blobs * blob_bytes of pack data)."""
    history = FastImport()
    files = {f"blob-{i:04}".encode(): os.urandom(blob_bytes) for i in range(blobs)}
    history.commit("refs/heads/main", b"medium\n", files, parents=[])
    history.run(path)
    subprocess.run(
        ["git", "-C", path, "symbolic-ref", "HEAD", "refs/heads/main"], check=True, env=GIT_ENV
    )


@contextlib.contextmanager
def slow_clone(
    address: str, relative_path: str, destination: str, *, bytes_per_s: float
) -> Iterator[subprocess.Popen[bytes]]:
    """`git clone` of /default/<relative_path> over `trio-gitaly ssh` at `address`, running.

    Killed (with what it started) if still running when the block ends.
    """
    env = {
        **GIT_ENV,
        "GIT_SSH_COMMAND": f"{sys.executable} {os.path.join(HERE, 'slow_ssh.py')}",
        "SLOW_SSH_ADDRESS": address,
        "SLOW_SSH_BYTES_PER_S": str(bytes_per_s),
        "GIT_TERMINAL_PROMPT": "0",
    }
    with subprocess.Popen(
        ["git", "clone", "--quiet", f"ssh://trio-gitaly/default/{relative_path}", destination],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as clone:
        try:
            yield clone
        finally:
            if clone.poll() is None:
                os.killpg(clone.pid, signal.SIGKILL)


def clone_finished(clone: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait for the clone; fail with git's stderr unless it succeeded."""
    _, stderr = clone.communicate(timeout=timeout_s)
    assert clone.returncode == 0, stderr.decode(errors="replace")

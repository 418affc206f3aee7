"""`trio-gitaly run` as a real process: start-up output, JSON logs, signals, exit codes."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from trio_gitaly.rpc.gen.gitaly import server_pb2
from trio_gitaly.rpc.gen.grpc.health.v1 import health_pb2

READY_TIMEOUT_S = 30.0


class ServerProcess:
    """A `trio-gitaly run` child whose JSON log lines are collected as they come."""

    def __init__(self, args: list[str], cwd: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trio_gitaly", "run", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.logs: list[dict[str, Any]] = []
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stdout = ""
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = {"msg": line.rstrip(), "not_json": True}
            self._lines.put(entry)
        self._lines.put(None)

    def wait_for(self, msg: str, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Collect log lines until one whose msg is `msg`; return it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                entry = self._lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if entry is None:
                raise AssertionError(f"server exited before logging {msg!r}: {self.logs}")
            self.logs.append(entry)
            if entry.get("msg") == msg:
                return entry
        raise AssertionError(f"no {msg!r} within {timeout_s}s: {self.logs}")

    def address(self, schema: str) -> str:
        return next(
            e["address"]
            for e in self.logs
            if e.get("msg") == "listening at address" and e.get("schema") == schema
        )

    def close(self) -> None:
        """Close our ends of the child's pipes once it is gone."""
        self._reader.join(timeout=5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    def finish(self, timeout_s: float) -> int:
        """Wait for the exit; return the exit code (fails the test on a timeout)."""
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        assert self.process.stdout is not None
        self.stdout = self.process.stdout.read()
        while (entry := self._lines.get(timeout=5)) is not None:
            self.logs.append(entry)
        return self.process.returncode


@pytest.fixture
def spawn() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(args: list[str], cwd: str) -> ServerProcess:
        server = ServerProcess(args, cwd)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        server.close()


def write_config(base: str, grace: str) -> str:
    os.makedirs(os.path.join(base, "run"), exist_ok=True)
    path = os.path.join(base, "config.toml")
    with open(path, "w", encoding="utf-8") as config:
        config.write(f"""
socket_path = "{base}/gitaly.socket"
listen_addr = "127.0.0.1:0"
prometheus_listen_addr = "127.0.0.1:0"
runtime_dir = "{base}/run"
graceful_restart_timeout = "{grace}"
[[storage]]
name = "default"
path = "{base}/storage"
""")
    return path


def hold_call(target: str) -> tuple[grpc.Channel, grpc.Future, threading.Event]:
    """Start a call whose first message never comes: in flight until released."""
    channel = grpc.insecure_channel(target)
    release = threading.Event()

    def never_sends() -> Iterator[health_pb2.HealthCheckRequest]:
        release.wait(60)
        return
        yield

    future = channel.stream_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    ).future(never_sends())
    time.sleep(0.3)
    return channel, future, release


def test_sigterm_lets_an_in_flight_stream_finish_and_exits_0(
    short_dir: str, spawn: Callable[..., ServerProcess]
) -> None:
    server = spawn(["--config", write_config(short_dir, "10s")], short_dir)
    started = server.wait_for("Started trio-gitaly")
    assert started["level"] == "info" and started["duration_ms"] > 0 and started["pid"] > 0
    runtime_dir = os.path.join(short_dir, "run", f"gitaly-{server.process.pid}")
    assert os.path.isdir(runtime_dir)
    with grpc.insecure_channel(server.address("tcp")) as channel:
        watch = channel.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )(health_pb2.HealthCheckRequest(), timeout=20)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        server.process.send_signal(signal.SIGTERM)
        # The stream is answered to its end, with OK, while the server drains.
        assert [m.status for m in watch] == [health_pb2.HealthCheckResponse.NOT_SERVING]
        assert watch.code() == grpc.StatusCode.OK
    assert server.finish(timeout_s=10) == 0
    messages = [entry.get("msg") for entry in server.logs]
    assert "[shutdown] stopping trio-gitaly" in messages
    assert not os.path.exists(runtime_dir)
    assert not os.path.exists(os.path.join(short_dir, "gitaly.socket"))
    access = [e for e in server.logs if e.get("grpc.method") == "Watch"]
    assert access and access[0]["grpc.code"] == "OK" and "correlation_id" in access[0]


def test_grace_period_ends_hung_calls_and_exits_0(
    short_dir: str, spawn: Callable[..., ServerProcess]
) -> None:
    server = spawn(["--config", write_config(short_dir, "1s")], short_dir)
    server.wait_for("Started trio-gitaly")
    channel, _future, release = hold_call(server.address("tcp"))
    try:
        start = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.finish(timeout_s=10) == 0
        assert 0.9 <= time.monotonic() - start < 5
    finally:
        release.set()
        channel.close()


def test_second_signal_exits_1_at_once(short_dir: str, spawn: Callable[..., ServerProcess]) -> None:
    server = spawn(["--config", write_config(short_dir, "60s")], short_dir)
    server.wait_for("Started trio-gitaly")
    channel, _future, release = hold_call(server.address("tcp"))
    try:
        server.process.send_signal(signal.SIGTERM)
        server.wait_for("[shutdown] stopping trio-gitaly")
        time.sleep(0.3)
        assert server.process.poll() is None, "the first signal must drain, not exit"
        start = time.monotonic()
        server.process.send_signal(signal.SIGINT)
        assert server.finish(timeout_s=5) == 1
        assert time.monotonic() - start < 2
    finally:
        release.set()
        channel.close()
    assert "force shutdown" in [entry.get("msg") for entry in server.logs]
    assert not os.path.exists(os.path.join(short_dir, "run", f"gitaly-{server.process.pid}"))


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_embedded_defaults_serve_and_say_where(
    short_dir: str, spawn: Callable[..., ServerProcess]
) -> None:
    for port in (8075, 9236):
        assert _port_free(port), f"port {port} is taken; the embedded defaults need it"
    server = spawn([], short_dir)
    server.wait_for("Started trio-gitaly")
    with grpc.insecure_channel("127.0.0.1:8075") as channel:
        info = channel.unary_unary(
            "/gitaly.ServerService/ServerInfo",
            request_serializer=server_pb2.ServerInfoRequest.SerializeToString,
            response_deserializer=server_pb2.ServerInfoResponse.FromString,
        )(server_pb2.ServerInfoRequest(), timeout=10)
    assert [s.storage_name for s in info.storage_statuses] == ["default"]
    assert os.path.isdir(os.path.join(short_dir, "trio-gitaly-data", "repositories"))
    server.process.send_signal(signal.SIGINT)
    assert server.finish(timeout_s=10) == 0
    assert "127.0.0.1:8075" in server.stdout and "127.0.0.1:9236" in server.stdout
    assert "trio-gitaly-data/gitaly.socket" in server.stdout

"""Graceful restart as an operator sees it: real processes, real clients, SIGHUP.

Every test runs a chain of `trio-gitaly run` processes (support.ServerChain) under a
load of unary RPCs over TCP and the unix socket; none of those calls may fail.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request

import grpc
import pytest
import trustme

from tests.helpers import git, repository
from tests.upgrade.support import (
    clone_finished,
    config_text,
    load,
    medium_repository,
    read_pid,
    server_chain,
    slow_clone,
    write_config,
)
from trio_gitaly.rpc.gen.gitaly import server_pb2

# 16 MB of pack at 4 MB/s: the clone takes about four seconds. The clients' buffers
# (grpcio's flow-control window, pipes) hold the last ~4 MB, so the server streams for
# about three seconds: through the restart.
CLONE_BLOBS = 244
CLONE_BLOB_BYTES = 64 * 1024
CLONE_BYTES_PER_S = 4_000_000
CLONE_TIMEOUT_S = 60.0
UPGRADES_IN_A_ROW = 20


@pytest.fixture
def base(short_dir: str) -> str:
    medium_repository(
        os.path.join(short_dir, "storage", "big.git"),
        blobs=CLONE_BLOBS,
        blob_bytes=CLONE_BLOB_BYTES,
    )
    return short_dir


def _readyz(address: str) -> int:
    with urllib.request.urlopen(f"http://{address}/readyz", timeout=5) as response:
        return int(response.status)


def _server_info(target: str, credentials: grpc.ChannelCredentials | None = None) -> bool:
    if credentials is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, credentials)
    with channel:
        response = channel.unary_unary(
            "/gitaly.ServerService/ServerInfo",
            request_serializer=server_pb2.ServerInfoRequest.SerializeToString,
            response_deserializer=server_pb2.ServerInfoResponse.FromString,
        )(server_pb2.ServerInfoRequest(), timeout=10)
    return bool(response.server_version)


def _finished_clones(entries: list[dict[str, object]]) -> list[dict[str, object]]:
    return [
        e
        for e in entries
        if e.get("grpc.method") == "SSHUploadPack" and str(e.get("msg", "")).startswith("finished")
    ]


def test_sighup_under_load_hands_over_while_a_clone_finishes(base: str) -> None:
    with (
        server_chain(base, write_config(base)) as chain,
        load(chain, repository("big.git")) as calls,
    ):
        old = chain.pid
        time.sleep(0.5)
        destination = os.path.join(base, "clone")
        with slow_clone(
            f"tcp://{chain.address('tcp')}", "big.git", destination, bytes_per_s=CLONE_BYTES_PER_S
        ) as clone:
            time.sleep(0.5)
            assert clone.poll() is None, "the clone must still be in flight at the SIGHUP"
            os.kill(old, signal.SIGHUP)
            chain.wait_log("starting upgrade", pid=old)
            # A second SIGHUP while the first upgrade runs is refused, not queued.
            os.kill(old, signal.SIGHUP)
            new = chain.wait_ready(previous=old)
            chain.pid = new
            switched = time.monotonic()
            assert chain.alive(old), "the old process drains the clone, it does not exit yet"
            clone_finished(clone, CLONE_TIMEOUT_S)
        assert chain.exit_code(old) == 0
        # The old process left the socket file to the new one, which a new client reaches.
        assert _server_info(f"unix:{chain.address('unix')}")
        assert _readyz(chain.address("http")) == 200
    assert calls.failures == []
    for transport in ("tcp", "unix"):
        assert calls.count(transport, since=switched) > 0, f"no {transport} call after the switch"
    refused = [e for e in chain.logs(old) if e.get("msg") == "upgrade refused"]
    assert [e.get("reason") for e in refused] == ["an upgrade is already in progress"]
    assert [e["new_pid"] for e in chain.logs(old) if e.get("msg") == "Upgrade succeeded"] == [new]
    # The clone was served to its end by the old process, after the new one took over.
    (finished,) = _finished_clones(chain.logs(old))
    assert finished["grpc.code"] == "OK"
    succeeded = next(e for e in chain.logs(old) if e.get("msg") == "Upgrade succeeded")
    assert str(finished["time"]) > str(succeeded["time"])
    assert git("-C", destination, "rev-parse", "HEAD") == git(
        "-C", os.path.join(base, "storage", "big.git"), "rev-parse", "HEAD"
    )
    # Stopped plainly at the end, the new process removed its pid file.
    assert read_pid(chain.pid_file) is None


def test_twenty_upgrades_in_a_row_fail_no_request(base: str) -> None:
    bad_reads: list[str] = []
    watching = threading.Event()

    def watch_pid_file(path: str) -> None:
        # Written by temp file + rename, the pid file is never seen empty or partial.
        while not watching.is_set():
            try:
                with open(path, encoding="ascii") as pid_file:
                    text = pid_file.read()
            except FileNotFoundError:
                bad_reads.append("missing")
                continue
            if not text.strip().isdigit():
                bad_reads.append(repr(text))

    with (
        server_chain(base, write_config(base)) as chain,
        load(chain, repository("big.git")) as calls,
    ):
        watcher = threading.Thread(target=watch_pid_file, args=(chain.pid_file,), daemon=True)
        watcher.start()
        pids = [chain.pid]
        for _ in range(UPGRADES_IN_A_ROW):
            before = calls.count("tcp") + calls.count("unix")
            pids.append(chain.upgrade())
            # Both transports are served by the new process before the next restart.
            deadline = time.monotonic() + 5
            while calls.count("tcp") + calls.count("unix") < before + 4:
                assert time.monotonic() < deadline, "no calls served after an upgrade"
                time.sleep(0.01)
        watching.set()
        watcher.join()
        exit_codes = [chain.exit_code(pid) for pid in pids[:-1]]
    assert calls.failures == []
    assert bad_reads == []
    assert len(set(pids)) == UPGRADES_IN_A_ROW + 1
    assert exit_codes == [0] * UPGRADES_IN_A_ROW
    # Each process wrote a temporary file and renamed it into place.
    assert not [name for name in os.listdir(base) if name.startswith(".pid-")]


def test_broken_config_keeps_the_old_process_serving(base: str) -> None:
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1")
    tls = (os.path.join(base, "cert.pem"), os.path.join(base, "key.pem"))
    certificate.cert_chain_pems[0].write_to_path(tls[0])
    certificate.private_key_pem.write_to_path(tls[1])
    config = write_config(base, tls=tls)
    with server_chain(base, config) as chain, load(chain, repository("big.git")) as calls:
        old = chain.pid
        with open(config, "w", encoding="utf-8") as broken:
            broken.write("listen_addr = 'not an address'\n")
        os.kill(old, signal.SIGHUP)
        failed = chain.wait_log("Upgrade failed", pid=old)
        assert failed["error"] == "the new process exited with status 2"
        before = calls.count("tcp") + calls.count("unix")
        time.sleep(0.5)
        assert calls.count("tcp") + calls.count("unix") > before
        assert read_pid(chain.pid_file) == old
        assert chain.alive(old)

        with open(config, "w", encoding="utf-8") as fixed:
            fixed.write(config_text(base, tls=tls))
        new = chain.upgrade()
        assert new != old
        assert chain.exit_code(old) == 0
        # The TLS listener was handed over too: same address, served with the new context.
        address = chain.address("tls", pid=new)
        assert address == chain.address("tls", pid=old)
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
        assert _server_info(address, credentials)
    assert calls.failures == []


def test_sigterm_lets_an_in_flight_clone_finish(base: str) -> None:
    with server_chain(base, write_config(base)) as chain:
        pid = chain.pid
        destination = os.path.join(base, "clone")
        with slow_clone(
            f"unix://{chain.address('unix')}", "big.git", destination, bytes_per_s=CLONE_BYTES_PER_S
        ) as clone:
            time.sleep(0.5)
            assert clone.poll() is None
            os.kill(pid, signal.SIGTERM)
            clone_finished(clone, CLONE_TIMEOUT_S)
        assert chain.exit_code(pid) == 0
        assert chain.supervisor.wait(timeout=10) == 0
    (finished,) = _finished_clones(chain.logs(pid))
    assert finished["grpc.code"] == "OK"
    # A plain stop removes what the server leaves behind: the socket file, the pid file.
    assert not os.path.exists(os.path.join(base, "gitaly.socket"))
    assert not os.path.exists(chain.pid_file)

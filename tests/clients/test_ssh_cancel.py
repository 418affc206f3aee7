"""A client that goes away mid-clone or mid-push ends the RPC and its git processes.

The repository is big and made of loose random blobs, so the server's pack-objects
spends seconds compressing before it sends anything: git is killed while the server has
nothing to write, the case where only the ssh helper's watch of git can notice.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import trio

from tests.helpers import storage_path
from tests.repos import FastImport, git
from tests.transport_helpers import (
    client_env,
    fsck,
    quarantine_dirs,
    refs,
    ssh_url,
    transport_processes,
    unix_address,
    wait_for,
)
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer
from trio_gitaly.rpc.gen.gitaly import shared_pb2, ssh_pb2
from trio_gitaly.transport import pktline

BLOBS = 24
BLOB_BYTES = 1024 * 1024  # random, so 24 MiB that no compression shrinks
#: How soon after the client is gone its RPC's git processes must be gone.
GONE_WITHIN_S = 1.0
#: How long the server may take to get busy (spawn pack-objects, open a quarantine).
BUSY_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def big_repository(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A repository of `BLOBS` incompressible blobs on main (built once per module).

    fast-import leaves fewer than 100 objects loose: nothing can be reused as is.
    """
    path = str(tmp_path_factory.mktemp("big") / "big.git")
    build = FastImport()
    files = {f"blob{i:02}.bin".encode(): os.urandom(BLOB_BYTES) for i in range(BLOBS)}
    build.commit("refs/heads/main", b"Big\n", files, parents=[])
    build.run(path)
    git(path, "symbolic-ref", "HEAD", "refs/heads/main")
    return path


def server_copy(config: Config, source: str, name: str) -> str:
    """A copy of repository `source` in the test server's storage."""
    path = os.path.join(storage_path(config), name)
    shutil.copytree(source, path)
    return path


def helpers_of(url: str) -> list[int]:
    """Pids of live `trio-gitaly ssh` processes serving `url`'s repository."""
    target = url.split("/", 3)[3]
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                zombie = f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
        except (OSError, ValueError):
            continue
        is_helper = b"trio_gitaly" in argv and b"ssh" in argv
        if is_helper and not zombie and any(target.encode() in arg for arg in argv):
            pids.append(int(entry))
    return pids


def running(repo: str, command: str) -> bool:
    return any(command in cmdline for cmdline in transport_processes(repo))


async def start_git(*args: str, env: dict[str, str], cwd: str | None = None) -> trio.Process:
    """git in a session (process group) of its own, so the test can kill all of it."""
    return await trio.lowlevel.open_process(
        ["git", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_group(process: trio.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


async def test_killing_git_mid_clone_ends_the_rpc(
    server: RunningServer, config: Config, big_repository: str, tmp_path: object
) -> None:
    repo = server_copy(config, big_repository, "big.git")
    url = ssh_url("big.git")
    clone = os.path.join(str(tmp_path), "clone.git")
    process = await start_git("clone", "--bare", url, clone, env=client_env(unix_address(config)))
    try:
        assert await wait_for(lambda: running(repo, "pack-objects"), BUSY_WITHIN_S)
        assert helpers_of(url), "the ssh helper is not running"
        # git alone: its ssh helper must notice by itself that git is gone.
        process.kill()
        await process.wait()
        assert await wait_for(lambda: not transport_processes(repo), GONE_WITHIN_S), (
            transport_processes(repo)
        )
        assert await wait_for(lambda: not helpers_of(url), GONE_WITHIN_S)
    finally:
        kill_group(process)


async def test_killing_the_ssh_helper_mid_clone_ends_the_rpc(
    server: RunningServer, config: Config, big_repository: str, tmp_path: object
) -> None:
    repo = server_copy(config, big_repository, "big.git")
    url = ssh_url("big.git")
    clone = os.path.join(str(tmp_path), "clone.git")
    process = await start_git("clone", "--bare", url, clone, env=client_env(unix_address(config)))
    try:
        assert await wait_for(lambda: running(repo, "pack-objects"), BUSY_WITHIN_S)
        for pid in helpers_of(url):
            os.kill(pid, signal.SIGKILL)  # the server sees the connection close
        assert await wait_for(lambda: not transport_processes(repo), GONE_WITHIN_S), (
            transport_processes(repo)
        )
        with trio.fail_after(GONE_WITHIN_S):
            assert await process.wait() != 0
    finally:
        kill_group(process)


async def test_killing_a_push_removes_its_quarantine(
    server: RunningServer, config: Config, big_repository: str
) -> None:
    empty = os.path.join(storage_path(config), "empty.git")
    git(storage_path(config), "init", "--bare", "--quiet", empty)
    env = client_env(unix_address(config))
    process = await start_git("push", ssh_url("empty.git"), "main", env=env, cwd=big_repository)
    try:
        # The quarantine appears once the pack starts to arrive.
        assert await wait_for(lambda: quarantine_dirs(empty), BUSY_WITHIN_S)
        kill_group(process)  # git, its pack-objects and the ssh helper, as ^C would
        await process.wait()
        assert await wait_for(lambda: not transport_processes(empty), GONE_WITHIN_S), (
            transport_processes(empty)
        )
        assert await wait_for(lambda: not quarantine_dirs(empty), GONE_WITHIN_S)
    finally:
        kill_group(process)
    assert refs(empty) == ""
    assert os.listdir(os.path.join(empty, "objects", "pack")) == []
    fsck(empty)


async def test_cancelled_rpc_ends_upload_pack(
    server: RunningServer, config: Config, big_repository: str
) -> None:
    repo = server_copy(config, big_repository, "big.git")
    main = git(repo, "rev-parse", "main").decode().strip()
    want = pktline.encode(f"want {main}\n".encode()) + pktline.flush() + pktline.encode(b"done\n")
    held_open = threading.Event()

    def requests() -> Iterator[ssh_pb2.SSHUploadPackRequest]:
        yield ssh_pb2.SSHUploadPackRequest(
            repository=shared_pb2.Repository(storage_name="default", relative_path="big.git")
        )
        yield ssh_pb2.SSHUploadPackRequest(stdin=want)
        held_open.wait()  # no half-close: the call ends by cancellation only

    with grpc.insecure_channel(server.addresses["tcp"][0]) as channel:
        method = channel.stream_stream(
            "/gitaly.SSHService/SSHUploadPack",
            request_serializer=ssh_pb2.SSHUploadPackRequest.SerializeToString,
            response_deserializer=ssh_pb2.SSHUploadPackResponse.FromString,
        )
        call: Any = method(requests())
        try:
            first = await trio.to_thread.run_sync(next, call)
            assert first.stdout.startswith(b"0")  # the ref advertisement
            assert await wait_for(lambda: running(repo, "pack-objects"), BUSY_WITHIN_S)
            call.cancel()
            assert await wait_for(lambda: not transport_processes(repo), GONE_WITHIN_S), (
                transport_processes(repo)
            )
        finally:
            held_open.set()
            call.cancel()

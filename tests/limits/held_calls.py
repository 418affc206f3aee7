"""SSHUploadPack calls a test holds open: the stream (and its limiter slot) lasts until
the test lets go, so tests can line up running, queued and refused calls for real."""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Sequence
from typing import Any

import grpc
import trio

from tests.helpers import Client, repository
from trio_gitaly.rpc.gen.gitaly import ssh_pb2

UPLOAD_PACK = "/gitaly.SSHService/SSHUploadPack"
#: How long a test waits for a call to reach a state before failing.
WAIT_S = 20.0


class HeldCall:
    """One SSHUploadPack stream, run by a grpcio thread.

    It counts as admitted once git's ref advertisement arrives (git only runs inside the
    slot). `release` sends a flush (no wants: git ends the session) and half-closes.
    """

    def __init__(
        self, client: Client, relative_path: str, metadata: Sequence[tuple[str, str]] = ()
    ) -> None:
        self._requests: queue.Queue[ssh_pb2.SSHUploadPackRequest | None] = queue.Queue()
        self._requests.put(ssh_pb2.SSHUploadPackRequest(repository=repository(relative_path)))
        method = client.channel.stream_stream(
            UPLOAD_PACK,
            request_serializer=ssh_pb2.SSHUploadPackRequest.SerializeToString,
            response_deserializer=ssh_pb2.SSHUploadPackResponse.FromString,
        )
        self._call: Any = method(self._iterate(), metadata=tuple(metadata), timeout=60)
        self._admitted = threading.Event()
        self.error: grpc.RpcError | None = None
        self.finished = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _iterate(self) -> Any:
        while (request := self._requests.get()) is not None:
            yield request

    def _run(self) -> None:
        try:
            for response in self._call:
                if response.stdout:
                    self._admitted.set()
        except grpc.RpcError as error:
            self.error = error
        finally:
            self.finished.set()

    @property
    def admitted(self) -> bool:
        """Whether git has started for this call."""
        return self._admitted.is_set()

    def release(self) -> None:
        """End the session cleanly; the slot is freed when the stream ends."""
        self._requests.put(ssh_pb2.SSHUploadPackRequest(stdin=b"0000"))
        self._requests.put(None)

    def cancel(self) -> None:
        """Cancel the call from the client side (RST_STREAM)."""
        self._call.cancel()

    async def wait_admitted(self) -> None:
        """Until git runs for this call; fails if the call ended instead."""
        await _until(lambda: self.admitted or self.finished.is_set())
        assert self.admitted, f"the call ended without being admitted: {self.error}"

    async def wait_finished(self) -> None:
        """Until the call ended, however it ended."""
        await _until(self.finished.is_set)

    def code(self) -> grpc.StatusCode | None:
        """The error's code (None while running or after success)."""
        return self.error.code() if self.error is not None else None


async def _until(condition: Any) -> None:
    with trio.fail_after(WAIT_S):
        while not condition():
            await trio.sleep(0.01)


def gauge(registry: Any, name: str, method: str = "SSHUploadPack") -> float:
    """A per-RPC limiting metric of SSHService's `method` (0 when never set)."""
    labels = {"system": "gitaly", "grpc_service": "gitaly.SSHService", "grpc_method": method}
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)


async def until_queued(registry: Any, *, at_least: int = 0, at_most: float = math.inf) -> None:
    """Until SSHUploadPack's queue holds at least `at_least` and at most `at_most` calls."""
    await _until(
        lambda: at_least <= gauge(registry, "gitaly_concurrency_limiting_queued") <= at_most
    )

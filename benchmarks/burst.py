"""Many SSHUploadPack streams at once from this process (the overload suite's gRPC side).

`upload_pack_burst(...)` opens one grpcio channel (one connection) per client, waits
until all are connected, then starts every call in the same event-loop turn. Each call
sends its first message (the repository) and times it until the call fails (a limiter's
refusal) or git's first stdout arrives (admitted). Admitted calls then hold their slots:
only once `hold_until` calls have answered (or `HOLD_MAX_S` passed) does each send a
flush packet and half-close, so a call waiting in the limiter's queue starts only then.
Holding makes the admitted set exactly what the limit allows, whatever the repository.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from trio_gitaly.rpc.gen.gitaly import ssh_pb2

RPC = "/gitaly.SSHService/SSHUploadPack"
REFUSED = "maximum queue size reached"  # the limiter's RESOURCE_EXHAUSTED message
CONNECT_TIMEOUT_S = 10.0
HOLD_MAX_S = 10.0  # admitted streams hold their slots at most this long
CALL_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 0.01
FLUSH = b"0000"  # a pkt-line flush: the client asks for nothing, upload-pack exits


@dataclass
class CallOutcome:
    """One SSHUploadPack stream of a burst."""

    code: str  # "OK", "RESOURCE_EXHAUSTED", ...
    details: str
    answered_ms: float  # first message sent → the failure, or → the first stdout
    queued: bool = False  # its first stdout came only after the held streams let go
    completed: bool = False  # it ended with status OK and git's exit status 0

    @property
    def kind(self) -> Literal["refused", "admitted", "error"]:
        """Refused by the limiter, admitted (it got git's stdout), or something else."""
        if self.code == "RESOURCE_EXHAUSTED" and REFUSED in self.details:
            return "refused"
        return "admitted" if self.code == "OK" and not self.details else "error"


async def _one(
    call: Any, request: bytes, hold: asyncio.Event, answered: list[CallOutcome]
) -> CallOutcome:
    import grpc.aio

    outcome: CallOutcome | None = None
    begin = time.perf_counter()
    try:
        await call.write(request)
        while True:
            raw = await call.read()
            if raw is grpc.aio.EOF:
                ended = CallOutcome("OK", "ended before any stdout", _ms(begin))
                answered.append(ended)
                return ended
            if ssh_pb2.SSHUploadPackResponse.FromString(raw).stdout:
                break
        outcome = CallOutcome("OK", "", _ms(begin), queued=hold.is_set())
        answered.append(outcome)
        await hold.wait()
        await call.write(ssh_pb2.SSHUploadPackRequest(stdin=FLUSH).SerializeToString())
        await call.done_writing()
        exit_status = 0  # the server sends one only when git failed (as Gitaly)
        while (raw := await call.read()) is not grpc.aio.EOF:
            response = ssh_pb2.SSHUploadPackResponse.FromString(raw)
            if response.HasField("exit_status"):
                exit_status = response.exit_status.value
        outcome.completed = exit_status == 0
        return outcome
    except grpc.aio.AioRpcError as error:
        failed = CallOutcome(error.code().name, error.details() or "", _ms(begin))
        if outcome is None:  # not counted yet: it failed before git answered
            answered.append(failed)
        return failed


def _ms(begin: float) -> float:
    return (time.perf_counter() - begin) * 1000


async def upload_pack_burst(
    target: str, request: bytes, clients: int, *, hold_until: int, poll: Callable[[], None]
) -> list[CallOutcome]:
    """Run `clients` SSHUploadPack calls at once against `target` ("unix:/path").

    `request`: the serialized first message. `poll()` runs every `POLL_INTERVAL_S` while
    the admitted calls hold their slots (the suite samples the server's RSS there).
    """
    import grpc.aio

    # grpcio would otherwise share one connection between channels to the same target;
    # separate clients (processes) have one each.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(clients)]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(channel.channel_ready() for channel in channels)), CONNECT_TIMEOUT_S
        )
        hold = asyncio.Event()
        answered: list[CallOutcome] = []  # refused or admitted so far
        calls = [channel.stream_stream(RPC)(timeout=CALL_TIMEOUT_S) for channel in channels]
        tasks = [asyncio.create_task(_one(call, request, hold, answered)) for call in calls]
        deadline = time.perf_counter() + HOLD_MAX_S
        while len(answered) < hold_until and time.perf_counter() < deadline:
            poll()
            await asyncio.sleep(POLL_INTERVAL_S)
        hold.set()
        return list(await asyncio.wait_for(asyncio.gather(*tasks), CALL_TIMEOUT_S))
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))

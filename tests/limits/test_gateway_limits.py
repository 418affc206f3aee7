"""Limits on the HTTP gateway: its requests count under the RPCs Workhorse would call, and
a refused one gets 429 with Gitaly's message."""

from __future__ import annotations

import os

import httpx
import trio

from tests.http.gateway_support import git, start_gateway
from tests.repos import rich_repository
from trio_gitaly.config_limits import ConcurrencyConfig
from trio_gitaly.limits.limiter import MAX_QUEUE_SIZE_MESSAGE

POST_UPLOAD_PACK = "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel"
LABELS = {
    "system": "gitaly",
    "grpc_service": "gitaly.SmartHTTPService",
    "grpc_method": "PostUploadPackWithSidechannel",
}


async def test_a_full_queue_answers_429_and_the_clone_fails_with_the_message(
    nursery: trio.Nursery, short_dir: str
) -> None:
    limit = ConcurrencyConfig(rpc=POST_UPLOAD_PACK, max_per_repo=1, max_queue_size=1)
    gateway = await start_gateway(nursery, short_dir, concurrency=(limit,))
    rich_repository(gateway.repo("a.git"))
    registry = gateway.server.metrics.registry
    url = gateway.url("a.git") + "/git-upload-pack"
    headers = {"content-type": "application/x-git-upload-pack-request"}
    finish = trio.Event()
    statuses: list[int] = []

    async def held_post() -> None:
        async def body():  # type: ignore[no-untyped-def]
            await finish.wait()
            yield b"0000"  # no wants: upload-pack answers nothing and exits

        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(url, content=body(), headers=headers)
            statuses.append(response.status_code)

    def sample(name: str) -> float:
        return registry.get_sample_value(name, LABELS) or 0.0

    nursery.start_soon(held_post)
    with trio.fail_after(10):
        while sample("gitaly_concurrency_limiting_in_progress") < 1:
            await trio.sleep(0.01)
    nursery.start_soon(held_post)
    with trio.fail_after(10):
        while sample("gitaly_concurrency_limiting_queued") < 1:
            await trio.sleep(0.01)

    async with httpx.AsyncClient(timeout=30) as client:
        refused = await client.post(url, content=b"0000", headers=headers)
    assert refused.status_code == 429
    assert refused.text == MAX_QUEUE_SIZE_MESSAGE + "\n"
    # git says what happened (it does not show the body of a failed POST).
    clone = os.path.join(short_dir, "clone")
    result = await git("clone", "--quiet", gateway.url("a.git"), clone, check=False)
    assert result.returncode != 0
    assert b"HTTP 429" in result.stderr
    finish.set()
    with trio.fail_after(10):
        while len(statuses) < 2:
            await trio.sleep(0.01)
    assert statuses == [200, 200]
    dropped = registry.get_sample_value(
        "gitaly_requests_dropped_total", {**LABELS, "reason": "max_size"}
    )
    assert dropped == 2
    # With the queue empty again, the same clone goes through.
    await git("clone", "--quiet", gateway.url("a.git"), clone)

"""The disk cache of InfoRefsUploadPack on a real server, through grpcio.

A second identical request is a hit with the same bytes; every way a repository changes
through the server (PostReceivePack, SSHReceivePack, a push through the gateway,
RemoveRepository, CreateRepository) makes the next advertisement show the change.
Changing a repository behind the server's back is how the tests tell a hit from a
recomputed answer: only a cached body can still show the old refs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import trio

from tests.helpers import Client, repository, storage_path
from tests.http.gateway_support import git as http_git
from tests.http.gateway_support import start_gateway
from tests.repos import git, rich_repository
from tests.rpc.services.test_smarthttp_receive_pack import ZERO, body, new_commit, post, report
from tests.transport_helpers import client_env, run_git, ssh_url, unix_address
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer
from trio_gitaly.rpc.gen.gitaly import repository_pb2, smarthttp_pb2

INFO_REFS = "/gitaly.SmartHTTPService/InfoRefsUploadPack"
REPOSITORY = "/gitaly.RepositoryService/"
REPO = repository("repo.git")


@pytest.fixture
def repo(config: Config) -> str:
    path = os.path.join(storage_path(config), "repo.git")
    rich_repository(path)
    return path


async def info_refs(client: Client, **fields: Any) -> bytes:
    request = smarthttp_pb2.InfoRefsRequest(repository=REPO, **fields)
    responses = await client.stream(INFO_REFS, request, smarthttp_pb2.InfoRefsResponse)
    return b"".join(r.data for r in responses)


def metric(server: RunningServer, name: str, **labels: str) -> float:
    return server.metrics.registry.get_sample_value(name, labels) or 0.0


def hit_miss(server: RunningServer) -> tuple[float, float, float]:
    """gitaly_inforef_cache_hit_miss_total by type: (hit, miss, err)."""

    def count(kind: str) -> float:
        return metric(server, "gitaly_inforef_cache_hit_miss_total", type=kind)

    return count("hit"), count("miss"), count("err")


def change_behind_the_servers_back(repo: str) -> None:
    """A ref update no lease sees: a cached advertisement keeps showing the old refs."""
    git(repo, "update-ref", "refs/heads/sneaky", "main")


def cache_files(config: Config) -> list[str]:
    root = os.path.join(storage_path(config), "+gitaly", "cache")
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files]


async def test_second_request_is_a_hit_with_the_same_bytes(
    server: RunningServer, client: Client, config: Config, repo: str
) -> None:
    first = await info_refs(client)
    assert b"refs/heads/main" in first
    assert hit_miss(server) == (0, 1, 0)
    (entry,) = cache_files(config)
    with open(entry, "rb") as f:
        assert f.read() == first

    change_behind_the_servers_back(repo)
    second = await info_refs(client)
    assert second == first
    assert hit_miss(server) == (1, 1, 0)
    assert metric(server, "gitaly_inforef_cache_attempt_total") == 2
    assert metric(server, "gitaly_diskcache_requests_total") == 2
    assert metric(server, "gitaly_diskcache_miss_total") == 1
    assert metric(server, "gitaly_diskcache_bytes_stored_total") == len(first)
    assert metric(server, "gitaly_diskcache_bytes_fetched_total") == len(first)


@pytest.mark.parametrize(
    "fields",
    [{"git_protocol": "version=2"}, {"git_config_options": ["uploadpack.allowFilter=false"]}],
    ids=["protocol-v2", "config-options"],
)
async def test_v2_and_config_options_bypass_the_cache(
    server: RunningServer, client: Client, config: Config, repo: str, fields: dict[str, Any]
) -> None:
    await info_refs(client, **fields)
    change_behind_the_servers_back(repo)
    if "git_protocol" in fields:
        # v2 advertises capabilities only: ask for the refs some other way.
        assert await info_refs(client, **fields)
    else:
        assert b"refs/heads/sneaky" in await info_refs(client, **fields)
    assert metric(server, "gitaly_inforef_cache_attempt_total") == 0
    assert cache_files(config) == []


async def test_a_pending_lease_bypasses_the_cache(
    server: RunningServer, client: Client, config: Config, repo: str
) -> None:
    await info_refs(client)
    # What a mutation in progress leaves: lookups must not trust the cache meanwhile.
    pending = os.path.join(storage_path(config), "+gitaly", "state", "repo.git", "pending")
    os.makedirs(pending, exist_ok=True)
    with open(os.path.join(pending, "in-flight"), "w"):
        pass
    change_behind_the_servers_back(repo)
    assert b"refs/heads/sneaky" in await info_refs(client)
    assert hit_miss(server) == (0, 1, 1)
    assert metric(server, "gitaly_diskcache_errors_total", error="ErrPendingExists") == 1


async def test_post_receive_pack_invalidates(
    server: RunningServer, client: Client, repo: str
) -> None:
    await info_refs(client)
    main = git(repo, "rev-parse", "main").decode().strip()
    oid, pack = new_commit(repo, main)
    response = await post(client, body([(ZERO, oid, "refs/heads/pushed")], pack), repository=REPO)
    assert report(response) == ["unpack ok", "ok refs/heads/pushed"]
    assert f"{oid} refs/heads/pushed".encode() in await info_refs(client)
    assert hit_miss(server) == (0, 2, 0)
    # The push's lease: counted as a mutator, with a fresh generation afterwards.
    assert metric(server, "gitaly_cacheinvalidator_optype_total", type="mutator") == 1
    assert metric(server, "gitaly_cacheinvalidator_optype_total", type="accessor") >= 2


async def test_ssh_receive_pack_invalidates(
    server: RunningServer, client: Client, config: Config, repo: str, tmp_path: object
) -> None:
    await info_refs(client)
    clone = os.path.join(str(tmp_path), "clone")
    env = client_env(unix_address(config))
    await run_git("clone", "--quiet", ssh_url("repo.git"), clone, env=env)
    await run_git("-C", clone, "commit", "--quiet", "--allow-empty", "-m", "ssh", env=env)
    await run_git("-C", clone, "push", "--quiet", "origin", "HEAD:refs/heads/over-ssh", env=env)
    oid = git(clone, "rev-parse", "HEAD").decode().strip()
    assert f"{oid} refs/heads/over-ssh".encode() in await info_refs(client)
    assert hit_miss(server)[0] == 0


async def test_gateway_push_invalidates(
    nursery: trio.Nursery, short_dir: str, connect: Callable[..., Client]
) -> None:
    gateway = await start_gateway(nursery, short_dir)
    rich_repository(gateway.repo("repo.git"))
    client = connect(gateway.server.addresses["tcp"][0])
    await info_refs(client)
    clone = os.path.join(short_dir, "clone")
    await http_git("clone", "--quiet", gateway.url("repo.git"), clone)
    await http_git("-C", clone, "commit", "--quiet", "--allow-empty", "-m", "over http")
    await http_git("-C", clone, "push", "--quiet", "origin", "HEAD:refs/heads/over-http")
    oid = (await http_git("-C", clone, "rev-parse", "HEAD")).stdout.decode().strip()
    assert f"{oid} refs/heads/over-http".encode() in await info_refs(client)
    assert hit_miss(gateway.server) == (0, 2, 0)
    state = os.path.join(gateway.storage, "+gitaly", "state", "repo.git")
    assert os.listdir(os.path.join(state, "pending")) == []


async def test_remove_and_create_repository_start_new_generations(
    server: RunningServer, client: Client, config: Config, repo: str
) -> None:
    latest = os.path.join(storage_path(config), "+gitaly", "state", "repo.git", "latest")

    def generation() -> str:
        with open(latest, encoding="utf-8") as f:
            return f.read()

    before = await info_refs(client)
    first = generation()
    await client.unary(
        REPOSITORY + "RemoveRepository",
        repository_pb2.RemoveRepositoryRequest(repository=REPO),
        repository_pb2.RemoveRepositoryResponse,
    )
    second = generation()
    assert second != first
    await client.unary(
        REPOSITORY + "CreateRepository",
        repository_pb2.CreateRepositoryRequest(repository=REPO),
        repository_pb2.CreateRepositoryResponse,
    )
    assert generation() not in (first, second)
    # The same path, now an empty repository: nothing of the old advertisement is served.
    after = await info_refs(client)
    assert b"refs/heads/main" in before
    assert b"refs/heads/" not in after
    assert hit_miss(server) == (0, 2, 0)
    assert metric(server, "gitaly_cacheinvalidator_optype_total", type="mutator") == 2
    assert metric(server, "gitaly_cacheinvalidator_rpc_total") == 4
    assert metric(server, "gitaly_cacheinvalidator_error_total", method=INFO_REFS) == 0

"""SmartHTTPService InfoRefsUploadPack and InfoRefsReceivePack against the git CLI.

Each body must be the service pkt-line, a flush, and exactly what
`git <service> --stateless-rpc --advertise-refs` prints with Gitaly's configuration
(the options are written out here from Gitaly's command descriptions, not taken from
the code under test).
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers import Client, repository, storage_path
from tests.repos import GIT_ENV, git, rich_repository
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import smarthttp_pb2

SERVICE = "/gitaly.SmartHTTPService/"
RPCS = {"upload-pack": "InfoRefsUploadPack", "receive-pack": "InfoRefsReceivePack"}
# Refs GitLab keeps to itself, and which of them each service advertises.
INTERNAL_REFS = {
    "refs/keep-around/1": (),
    "refs/tmp/1": (),
    "refs/remotes/origin/main": (),
    "refs/merge-requests/1/head": ("upload-pack",),
    "refs/environments/1": ("upload-pack",),
    "refs/pipelines/1": ("upload-pack",),
}
UPLOAD_PACK_CONFIG = [
    "uploadpack.allowFilter=true",
    "uploadpack.allowAnySHA1InWant=true",
    "uploadpack.hideRefs=refs/keep-around/",
    "uploadpack.hideRefs=refs/remotes/",
    "uploadpack.hideRefs=refs/tmp/",
]
RECEIVE_PACK_CONFIG = [
    "receive.advertisePushOptions=true",
    "core.hooksPath=/dev/null",
    *(
        f"receive.hideRefs={prefix}"
        for prefix in (
            "refs/environments/", "refs/keep-around/", "refs/merge-requests/",
            "refs/pipelines/", "refs/remotes/", "refs/tmp/",
        )
    ),
]  # fmt: skip


@pytest.fixture
def repo(config: Config) -> str:
    path = os.path.join(storage_path(config), "repo.git")
    rich_repository(path)
    main = git(path, "rev-parse", "main").decode().strip()
    for ref in INTERNAL_REFS:
        git(path, "update-ref", ref, main)
    return path


def expected_body(repo: str, service: str, git_protocol: str = "") -> bytes:
    """The reference: git itself, prefixed as Gitaly prefixes it."""
    config = UPLOAD_PACK_CONFIG if service == "upload-pack" else RECEIVE_PACK_CONFIG
    argv = ["git", *(arg for pair in config for arg in ("-c", pair))]
    env = {**GIT_ENV, "GIT_PROTOCOL": git_protocol} if git_protocol else GIT_ENV
    advertisement = subprocess.run(
        [*argv, service, "--stateless-rpc", "--advertise-refs", repo],
        env=env,
        check=True,
        capture_output=True,
    ).stdout
    header = f"# service=git-{service}\n".encode()
    return b"%04x" % (len(header) + 4) + header + b"0000" + advertisement


async def info_refs(client: Client, service: str, **fields: object) -> bytes:
    request = smarthttp_pb2.InfoRefsRequest(**fields)
    responses = await client.stream(
        SERVICE + RPCS[service], request, smarthttp_pb2.InfoRefsResponse
    )
    return b"".join(r.data for r in responses)


@pytest.mark.parametrize("service", ["upload-pack", "receive-pack"])
@pytest.mark.parametrize("git_protocol", ["", "version=2"])
async def test_body_is_gits_advertisement(
    client: Client, repo: str, service: str, git_protocol: str
) -> None:
    body = await info_refs(
        client, service, repository=repository("repo.git"), git_protocol=git_protocol
    )
    assert body == expected_body(repo, service, git_protocol)
    if git_protocol and service == "upload-pack":
        assert b"version 2\n" in body


@pytest.mark.parametrize("service", ["upload-pack", "receive-pack"])
async def test_internal_refs_are_hidden(client: Client, repo: str, service: str) -> None:
    body = await info_refs(client, service, repository=repository("repo.git"))
    for ref, advertised_by in INTERNAL_REFS.items():
        assert (ref.encode() in body) == (service in advertised_by), ref


@pytest.mark.parametrize("service", ["upload-pack", "receive-pack"])
async def test_client_config_options_are_honoured(client: Client, repo: str, service: str) -> None:
    body = await info_refs(
        client,
        service,
        repository=repository("repo.git"),
        git_config_options=["transfer.hideRefs=refs/tags"],
    )
    assert b"refs/heads/main" in body
    assert b"refs/tags/" not in body


@pytest.mark.parametrize("service", ["upload-pack", "receive-pack"])
@pytest.mark.parametrize(
    ("fields", "code", "message"),
    [
        ({}, "INVALID_ARGUMENT", "repository not set"),
        ({"repository": repository("")}, "INVALID_ARGUMENT", "repository path not set"),
        ({"repository": repository("missing.git")}, "NOT_FOUND", "repository not found"),
        (
            {"repository": repository("repo.git"), "git_config_options": ["nokey"]},
            "INVALID_ARGUMENT",
            'cannot convert invalid config key: "nokey"',
        ),
    ],
)
async def test_bad_requests(
    client: Client, repo: str, service: str, fields: dict[str, object], code: str, message: str
) -> None:
    request = smarthttp_pb2.InfoRefsRequest(**fields)
    error = await client.stream_error(
        SERVICE + RPCS[service], request, smarthttp_pb2.InfoRefsResponse
    )
    assert (error.code().name, error.details()) == (code, message)

"""The HTTP gateway's basic auth: off by default, and with `[gateway.basic_auth]` on."""

from __future__ import annotations

import base64
import os
import stat

import pytest
import trio

from tests.http.gateway_support import Gateway, assert_clone_matches, git, refs, start_gateway
from tests.http.test_gateway_fetch import request
from tests.repos import rich_repository
from trio_gitaly.config import GatewayBasicAuth

USER, PASSWORD = "alice", "s3cret:with colon"


@pytest.fixture
async def secured(nursery: trio.Nursery, short_dir: str) -> Gateway:
    return await start_gateway(
        nursery, short_dir, GatewayBasicAuth(username=USER, password=PASSWORD)
    )


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_off_by_default(gateway: Gateway, short_dir: str) -> None:
    rich_repository(gateway.repo("open.git"))
    url = f"http://{gateway.address}/default/open.git/info/refs?service=git-upload-pack"
    assert (await request(url))[0] == 200
    # Credentials nobody asked for are ignored.
    assert (await request(url, headers=basic("x", "y")))[0] == 200


async def test_requests_without_valid_credentials_are_refused(secured: Gateway) -> None:
    rich_repository(secured.repo("closed.git"))
    base = f"http://{secured.address}/default"
    for path in ("closed.git", "missing.git"):  # refused before the repository is looked up
        url = f"{base}/{path}/info/refs?service=git-upload-pack"
        status, headers, body = await request(url)
        assert (status, body) == (401, b"authentication required\n")
        assert headers["www-authenticate"] == 'Basic realm="trio-gitaly", charset="UTF-8"'
        for wrong in (basic(USER, "nope"), basic("bob", PASSWORD), {"Authorization": "Bearer x"}):
            assert (await request(url, headers=wrong))[0] == 401
    assert (await request(f"{base}/closed.git/info/refs?service=git-upload-pack",
                          headers=basic(USER, PASSWORD)))[0] == 200  # fmt: skip
    posted = await request(
        f"{base}/closed.git/git-upload-pack",
        b"0000",
        {"Content-Type": "application/x-git-upload-pack-request"},
    )
    assert posted[0] == 401


async def test_git_with_credentials(secured: Gateway, short_dir: str) -> None:
    repo = secured.repo("closed.git")
    rich_repository(repo)
    clone = os.path.join(short_dir, "clone")

    refused = await git("clone", secured.url("closed.git"), clone, check=False)
    assert refused.returncode != 0
    assert b"could not read Username" in refused.stderr or b"401" in refused.stderr
    wrong = await git(
        "clone", secured.url("closed.git", userinfo=f"{USER}:bad"), clone, check=False
    )
    assert wrong.returncode != 0 and b"Authentication failed" in wrong.stderr

    userinfo = f"{USER}:{PASSWORD.replace(':', '%3A').replace(' ', '%20')}"
    await git("clone", "--quiet", secured.url("closed.git", userinfo=userinfo), clone)
    await assert_clone_matches(repo, clone)

    # A push runs as the authenticated user.
    hooks = os.path.join(repo, "custom_hooks")
    os.makedirs(hooks)
    out = os.path.join(short_dir, "hook-env")
    with open(os.path.join(hooks, "pre-receive"), "w", encoding="utf-8") as f:
        f.write(f'#!/bin/sh\necho "$GL_ID $GL_USERNAME $GL_PROTOCOL" > {out}\ncat >/dev/null\n')
    os.chmod(os.path.join(hooks, "pre-receive"), stat.S_IRWXU)
    await git("-C", clone, "commit", "--quiet", "--allow-empty", "-m", "authenticated")
    await git("-C", clone, "push", "--quiet", "origin", "main")
    with open(out, encoding="utf-8") as f:
        assert f.read() == f"username-{USER} {USER} http\n"
    name = "refs/heads/main"
    assert await refs(repo, name) == await refs(clone, name)

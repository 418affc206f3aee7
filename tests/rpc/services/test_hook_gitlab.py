"""HookService with GitLab's internal API: a real HTTP server stands in for GitLab."""

from __future__ import annotations

import json
import os

import pytest
import trio

from tests.gitlab.server import ALLOWED, POST_RECEIVE, PRE_RECEIVE, InternalApi, Reply
from tests.helpers import Client, make_config
from tests.hooks.helpers import (
    CHANGES,
    bare_repository,
    payload_env,
    pre_receive,
    write_hook,
)
from trio_gitaly.config import Config, GitlabConfig
from trio_gitaly.hooks.payload import UserDetails

SECRET = "0123456789abcdef0123456789abcdef"
DENIED = "You are not allowed to push code to this project."


@pytest.fixture
async def api(nursery: trio.Nursery, short_dir: str) -> InternalApi:
    """GitLab's internal API on a unix socket (http+unix://, the socket path escaped)."""
    server = InternalApi(SECRET)
    await nursery.start(server.serve_unix, os.path.join(short_dir, "gitlab.sock"))
    return server


@pytest.fixture
def config(short_dir: str, api: InternalApi) -> Config:
    secret_file = os.path.join(short_dir, ".gitlab_shell_secret")
    with open(secret_file, "w") as f:
        f.write(SECRET + "\n")
    return make_config(short_dir, gitlab=GitlabConfig(url=api.url, secret_file=secret_file))


async def test_push_allowed(client: Client, config: Config, api: InternalApi) -> None:
    repo, path = bare_repository(config)
    marker = os.path.join(path, "custom-hook-ran")
    write_hook(os.path.join(path, "custom_hooks", "pre-receive"), f"#!/bin/sh\ntouch {marker}\n")
    env = [
        payload_env(repo),
        f"GIT_OBJECT_DIRECTORY={path}/objects/incoming-abc/objects",
        f"GIT_ALTERNATE_OBJECT_DIRECTORIES={path}/objects",
    ]
    result = await pre_receive(client, repo, env, push_options=("ci.skip",))
    assert (result.exit_status, result.stderr, result.stdout) == (0, b"", b"")
    [allowed] = api.seen(ALLOWED)
    assert allowed.claims is not None
    assert allowed.headers["user-agent"].startswith("gitaly/")
    body = allowed.json()
    assert body == {
        "action": "git-receive-pack",
        "gl_repository": "project-1",
        "project": path,
        "changes": CHANGES.decode(),
        "protocol": "ssh",
        "relative_path": "repo.git",
        "env": body["env"],
        "key_id": "42",
        "push_options": ["ci.skip"],
    }
    assert json.loads(body["env"]) == {
        "GIT_OBJECT_DIRECTORY_RELATIVE": "objects/incoming-abc/objects",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE": ["objects"],
    }
    assert os.path.exists(marker)
    assert api.seen(PRE_RECEIVE)[0].json() == {"gl_repository": "project-1"}
    # Order: /allowed, the custom hooks, /pre_receive.
    assert [r.path.rsplit("/", 1)[1] for r in api.requests] == ["allowed", "pre_receive"]


async def test_allowed_denial(client: Client, config: Config, api: InternalApi) -> None:
    repo, path = bare_repository(config)
    marker = os.path.join(path, "custom-hook-ran")
    write_hook(os.path.join(path, "custom_hooks", "pre-receive"), f"#!/bin/sh\ntouch {marker}\n")
    api.replies[ALLOWED] = Reply(status=403, body={"status": False, "message": DENIED})
    result = await pre_receive(client, repo, [payload_env(repo)])
    assert (result.exit_status, result.stderr) == (1, f"GitLab: {DENIED}".encode())
    api.replies[ALLOWED] = Reply(body={"status": False, "message": "not allowed"})
    result = await pre_receive(client, repo, [payload_env(repo)])
    assert (result.exit_status, result.stderr) == (1, b"GitLab: not allowed")
    api.replies[ALLOWED] = Reply(status=401, body=b"")
    result = await pre_receive(client, repo, [payload_env(repo)])
    assert (result.exit_status, result.stderr) == (1, b"GitLab: Internal API error (401)")
    assert not os.path.exists(marker)
    assert not api.seen(PRE_RECEIVE)


async def test_reference_counter_not_increased(
    client: Client, config: Config, api: InternalApi
) -> None:
    repo, _ = bare_repository(config)
    api.replies[PRE_RECEIVE] = Reply(body={"reference_counter_increased": False})
    result = await pre_receive(client, repo, [payload_env(repo)])
    assert (result.exit_status, result.stderr) == (1, b"")
    api.replies[PRE_RECEIVE] = Reply(status=500, body={"message": "redis down"})
    result = await pre_receive(client, repo, [payload_env(repo)])
    assert result.exit_status == 1
    assert result.stderr == (
        b"calling pre_receive endpoint: http post to gitlab api /pre_receive endpoint: redis down"
    )


async def test_fields_the_api_needs(client: Client, config: Config, api: InternalApi) -> None:
    repo, _ = bare_repository(config)
    cases = [
        (repo.__class__(storage_name="default", relative_path="repo.git"), None),
        (repo, UserDetails(username="jdoe", protocol="ssh")),
        (repo, UserDetails(userid="key-1")),
    ]
    messages = []
    for repository, user in cases:
        env = [payload_env(repository, user=user or UserDetails(userid="key-1", protocol="ssh"))]
        result = await pre_receive(client, repository, env)
        assert result.exit_status == 1
        messages.append(result.stderr)
    assert messages == [b"repository not set", b"user ID not set", b"protocol not set"]
    assert not api.requests


async def test_post_receive_messages(client: Client, config: Config, api: InternalApi) -> None:
    repo, path = bare_repository(config)
    write_hook(os.path.join(path, "custom_hooks", "post-receive"), "#!/bin/sh\necho custom\n")
    api.replies[POST_RECEIVE] = Reply(
        body={
            "reference_counter_decreased": True,
            "messages": [
                {"type": "basic", "message": "To create a merge request, visit:\n  http://x"},
                {"type": "alert", "message": "access denied"},
            ],
        }
    )
    result = await pre_receive(client, repo, [payload_env(repo)], post=True)
    assert (result.exit_status, result.stderr) == (0, b"")
    rule = b"=" * 72
    assert result.stdout == (
        b"\nTo create a merge request, visit:\n  http://x\n\n"
        b"\n" + rule + b"\n\n" + b" " * 29 + b"access denied\n\n" + rule + b"\n\n"
        b"custom\n"
    )
    [request] = api.seen(POST_RECEIVE)
    assert request.json() == {
        "changes": CHANGES.decode(),
        "gl_repository": "project-1",
        "identifier": "key-42",
        "push_options": None,
    }


async def test_post_receive_failures(client: Client, config: Config, api: InternalApi) -> None:
    repo, _ = bare_repository(config)
    api.replies[POST_RECEIVE] = Reply(body={"reference_counter_decreased": False})
    result = await pre_receive(client, repo, [payload_env(repo)], post=True)
    assert (result.exit_status, result.stderr) == (1, b"")
    api.replies[POST_RECEIVE] = Reply(status=502, body="bad gateway", content_type="text/plain")
    result = await pre_receive(client, repo, [payload_env(repo)], post=True)
    assert result.exit_status == 1
    assert result.stderr == (
        b"GitLab: http post to gitlab api /post_receive endpoint: Internal API error (502)"
    )
    api.replies[POST_RECEIVE] = Reply(
        body={"reference_counter_decreased": True, "messages": [{"type": "x", "message": "m"}]}
    )
    result = await pre_receive(client, repo, [payload_env(repo)], post=True)
    assert (result.exit_status, result.stdout) == (1, b"\n")
    assert result.stderr == b"error writing messages to stream: invalid message type: x"


async def test_unreachable_api(client: Client, config: Config, short_dir: str) -> None:
    repo, _ = bare_repository(config)
    os.unlink(os.path.join(short_dir, "gitlab.sock"))
    result = await pre_receive(client, repo, [payload_env(repo)])
    assert (result.exit_status, result.stderr) == (1, b"GitLab: Internal API unreachable")

"""A push through `trio-gitaly ssh` to a server that asks GitLab's internal API.

The whole chain: git → trio-gitaly ssh → SSHReceivePack → receive-pack → our hooks →
HookService → a real HTTP server playing GitLab's /allowed, /pre_receive, /post_receive.
"""

from __future__ import annotations

import os

import pytest
import trio

from tests.gitlab.server import ALLOWED, POST_RECEIVE, PRE_RECEIVE, InternalApi, Reply
from tests.helpers import make_config, storage_path
from tests.hooks.pushing import make_source, snapshot
from tests.repos import git
from tests.transport_helpers import client_env, refs, run_git, ssh_url, unix_address
from trio_gitaly.config import Config, GitlabConfig
from trio_gitaly.nursery_tree import RunningServer

SECRET = "fedcba9876543210fedcba9876543210"


@pytest.fixture
async def api(nursery: trio.Nursery) -> InternalApi:
    server = InternalApi(SECRET)
    await nursery.start(server.serve_tcp)
    return server


@pytest.fixture
def config(short_dir: str, api: InternalApi) -> Config:
    return make_config(short_dir, gitlab=GitlabConfig(url=api.url, secret=SECRET))


async def test_gitlab_decides_and_speaks_to_the_pushing_user(
    server: RunningServer, config: Config, short_dir: str, api: InternalApi
) -> None:
    origin = os.path.join(storage_path(config), "project.git")
    git(storage_path(config), "init", "--quiet", "--bare", origin)
    source = make_source(short_dir)
    env = client_env(unix_address(config), "--gl-id", "user-7", "--gl-repository", "project-7")
    push = ("-C", source, "push", ssh_url("project.git"), "main")

    api.replies[ALLOWED] = Reply(
        status=403, body={"status": False, "message": "You are not allowed to push code."}
    )
    before = snapshot(origin)
    denied = await run_git(*push, env=env, check=False)
    assert denied.returncode != 0
    assert "remote: GitLab: You are not allowed to push code." in denied.stderr.decode()
    assert snapshot(origin) == before
    allowed = api.seen(ALLOWED)[0].json()
    assert (allowed["user_id"], allowed["gl_repository"]) == ("7", "project-7")
    assert allowed["protocol"] == "ssh"

    api.replies[ALLOWED] = Reply(body={"status": True})
    api.replies[POST_RECEIVE] = Reply(
        body={
            "reference_counter_decreased": True,
            "messages": [{"type": "basic", "message": "To create a merge request, visit it"}],
        }
    )
    accepted = await run_git(*push, env=env)
    assert "remote: To create a merge request, visit it" in accepted.stderr.decode()
    assert refs(origin) == refs(source, "refs/heads/main")
    assert len(api.seen(PRE_RECEIVE)) == 1
    assert api.seen(POST_RECEIVE)[0].json()["gl_repository"] == "project-7"

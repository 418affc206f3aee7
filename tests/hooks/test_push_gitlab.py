"""End to end with GitLab's internal API: a real HTTP server answers the hooks' calls."""

from __future__ import annotations

import pytest
import trio

from tests.gitlab.server import ALLOWED, POST_RECEIVE, InternalApi, Reply
from tests.helpers import make_config
from tests.hooks.helpers import bare_repository
from tests.hooks.pushing import head, make_source, push, snapshot
from trio_gitaly.config import Config, GitlabConfig
from trio_gitaly.nursery_tree import RunningServer

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def api(nursery: trio.Nursery) -> InternalApi:
    server = InternalApi(SECRET)
    await nursery.start(server.serve_tcp)
    return server


@pytest.fixture
def config(short_dir: str, api: InternalApi) -> Config:
    return make_config(short_dir, gitlab=GitlabConfig(url=api.url, secret=SECRET))


async def test_gitlab_denial_and_messages(
    server: RunningServer, config: Config, short_dir: str, api: InternalApi
) -> None:
    repo, path = bare_repository(config)
    source = make_source(short_dir)
    api.replies[ALLOWED] = Reply(
        status=403, body={"status": False, "message": "You are not allowed to push code."}
    )
    before = snapshot(path)
    result = await push(server, repo, source, path, "main")
    assert result.returncode != 0
    assert "remote: GitLab: You are not allowed to push code." in result.stderr.decode()
    assert snapshot(path) == before
    # GitLab's access checks get git's quarantine, relative to the repository.
    env = api.seen(ALLOWED)[0].json()["env"]
    assert env.startswith('{"GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE":["objects"],')
    assert '"GIT_OBJECT_DIRECTORY_RELATIVE":"objects/tmp_objdir-incoming-' in env

    api.replies[ALLOWED] = Reply(body={"status": True})
    api.replies[POST_RECEIVE] = Reply(
        body={
            "reference_counter_decreased": True,
            "messages": [{"type": "alert", "message": "Your project is over its storage limit"}],
        }
    )
    result = await push(server, repo, source, path, "main")
    assert result.returncode == 0, result.stderr
    stderr = result.stderr.decode()
    assert "remote: " + "=" * 72 in stderr
    assert "remote: " + " " * 17 + "Your project is over its storage limit" in stderr
    assert head(path) == head(source)

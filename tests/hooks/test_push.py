"""End to end: a plain `git push` into the server's storage runs our hooks (see pushing.py)."""

from __future__ import annotations

import os

import pytest

from tests.helpers import make_config
from tests.hooks.helpers import RECORDING_HOOK, ZERO, bare_repository, read_env, write_hook
from tests.hooks.pushing import head, make_source, push, snapshot
from trio_gitaly.config import AuthConfig, Config
from trio_gitaly.nursery_tree import RunningServer

TOKEN = "internal-token"


@pytest.fixture
def config(short_dir: str) -> Config:
    """Auth on: the hooks must send the token."""
    return make_config(short_dir, auth=AuthConfig(token=TOKEN))


async def test_rejecting_pre_receive_leaves_the_repository_unchanged(
    server: RunningServer, config: Config, short_dir: str
) -> None:
    repo, path = bare_repository(config)
    write_hook(
        os.path.join(path, "custom_hooks", "pre-receive"),
        "#!/bin/sh\necho 'push rejected by policy' >&2\nexit 1\n",
    )
    before = snapshot(path)
    result = await push(server, repo, make_source(short_dir), path, "main", token=TOKEN)
    assert result.returncode != 0
    stderr = result.stderr.decode()
    assert "remote: push rejected by policy" in stderr
    assert "pre-receive hook declined" in stderr
    assert snapshot(path) == before


async def test_accepted_push_runs_update_and_post_receive(
    server: RunningServer, config: Config, short_dir: str
) -> None:
    repo, path = bare_repository(config)
    source = make_source(short_dir)
    log_dir = os.path.join(short_dir, "log")
    os.makedirs(log_dir)
    recording = RECORDING_HOOK.format(log_dir=log_dir)
    write_hook(os.path.join(path, "custom_hooks", "pre-receive"), recording + "echo checked\n")
    write_hook(os.path.join(path, "custom_hooks", "update"), recording)
    write_hook(os.path.join(path, "custom_hooks", "post-receive.d", "notify"), recording)
    result = await push(server, repo, source, path, "main", "-o", "ci.skip", token=TOKEN)
    assert result.returncode == 0, result.stderr
    assert "remote: checked" in result.stderr.decode()
    new = head(source)
    assert head(path) == new
    with open(os.path.join(log_dir, "runs")) as f:
        assert f.read().splitlines() == [
            f"pre-receive |{ZERO} {new} refs/heads/main;",
            f"update refs/heads/main {ZERO} {new}|",
            f"notify |{ZERO} {new} refs/heads/main;",
        ]
    expected = {
        "GL_ID": "key-42",
        "GL_USERNAME": "jdoe",
        "GL_PROTOCOL": "ssh",
        "GL_REPOSITORY": "project-1",
        "GL_PROJECT_PATH": "group/project",
        "GIT_DIR": path,
    }
    pre_env = read_env(os.path.join(log_dir, "pre-receive.env"))
    assert {key: pre_env.get(key) for key in expected} == expected
    # pre-receive sees the pushed objects in git's quarantine, and the repository's own.
    assert "/objects/tmp_objdir-incoming-" in pre_env["GIT_OBJECT_DIRECTORY"]
    assert os.path.normpath(pre_env["GIT_ALTERNATE_OBJECT_DIRECTORIES"]) == f"{path}/objects"
    update_env = read_env(os.path.join(log_dir, "update.env"))
    assert {key: update_env.get(key) for key in expected} == expected
    post_env = read_env(os.path.join(log_dir, "notify.env"))
    assert {key: post_env.get(key) for key in expected} == expected
    assert (post_env["GIT_PUSH_OPTION_COUNT"], post_env["GIT_PUSH_OPTION_0"]) == ("1", "ci.skip")


async def test_wrong_token_fails_the_push(
    server: RunningServer, config: Config, short_dir: str
) -> None:
    repo, path = bare_repository(config)
    before = snapshot(path)
    result = await push(server, repo, make_source(short_dir), path, "main", token="wrong")
    assert result.returncode != 0
    assert "remote: error executing git hook" in result.stderr.decode()
    assert snapshot(path) == before

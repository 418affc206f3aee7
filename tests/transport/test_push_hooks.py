"""Which hooks a push runs: only those with work, whichever transport brought it.

Each hook is a process; a push runs pre-receive always, update only with custom update
hooks, post-receive only with GitLab's API or custom post-receive hooks.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import storage_path
from tests.hooks.helpers import RECORDING_HOOK, write_hook
from tests.repos import FastImport, git
from tests.transport_helpers import client_env, refs, run_git, ssh_url, unix_address
from trio_gitaly.config import Config
from trio_gitaly.hooks.install import HookSetup, install_hooks
from trio_gitaly.hooks.payload import Hook
from trio_gitaly.nursery_tree import RunningServer
from trio_gitaly.transport.push_hooks import requested_hooks


def _setup(runtime_dir: str, *, custom: str = "", gitlab: bool = False) -> HookSetup:
    return HookSetup(
        install_hooks(runtime_dir),
        runtime_dir,
        os.path.join(runtime_dir, "intern"),
        custom_hooks_dir=custom,
        gitlab_configured=gitlab,
    )


@pytest.fixture
def repo(tmp_path: object) -> str:
    path = os.path.join(str(tmp_path), "repo.git")
    git(str(tmp_path), "init", "--quiet", "--bare", path)
    return path


def test_a_plain_push_needs_only_pre_receive(tmp_path: object, repo: str) -> None:
    setup = _setup(os.path.join(str(tmp_path)))
    assert requested_hooks(setup, repo) == Hook.PRE_RECEIVE
    assert sorted(os.listdir(setup.hooks_dir_for(Hook.PRE_RECEIVE))) == ["pre-receive"]


def test_gitlab_needs_post_receive(tmp_path: object, repo: str) -> None:
    setup = _setup(str(tmp_path), gitlab=True)
    assert requested_hooks(setup, repo) == Hook.PRE_RECEIVE | Hook.POST_RECEIVE


@pytest.mark.parametrize(
    ("where", "hook", "needed"),
    [
        ("repo", "custom_hooks/update", Hook.UPDATE),
        ("repo", "custom_hooks/update.d/10-check", Hook.UPDATE),
        ("repo", "custom_hooks/post-receive.d/notify", Hook.POST_RECEIVE),
        ("global", "update.d/10-check", Hook.UPDATE),
        ("global", "post-receive.d/notify", Hook.POST_RECEIVE),
    ],
)
def test_custom_hooks_make_their_hook_needed(
    tmp_path: object, repo: str, where: str, hook: str, needed: Hook
) -> None:
    global_dir = os.path.join(str(tmp_path), "global-hooks")
    write_hook(os.path.join(repo if where == "repo" else global_dir, hook), "#!/bin/sh\n")
    setup = _setup(str(tmp_path), custom=global_dir)
    assert requested_hooks(setup, repo) == Hook.PRE_RECEIVE | needed


def test_a_non_executable_file_is_no_hook(tmp_path: object, repo: str) -> None:
    path = os.path.join(repo, "custom_hooks", "update")
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write("#!/bin/sh\n")
    assert requested_hooks(_setup(str(tmp_path)), repo) == Hook.PRE_RECEIVE


def test_every_hook_requested_uses_the_full_directory(tmp_path: object) -> None:
    setup = _setup(str(tmp_path))
    every = Hook(sum(Hook) & ~Hook.PACK_OBJECTS)
    assert setup.hooks_dir_for(every) == setup.hooks_dir
    partial = setup.hooks_dir_for(Hook.PRE_RECEIVE | Hook.UPDATE)
    assert sorted(os.listdir(partial)) == ["pre-receive", "update"]
    # Made once, then reused.
    assert setup.hooks_dir_for(Hook.PRE_RECEIVE | Hook.UPDATE) == partial


async def test_custom_update_and_post_receive_hooks_run_through_ssh(
    server: RunningServer, config: Config, tmp_path: object
) -> None:
    origin = os.path.join(storage_path(config), "hooked.git")
    git(storage_path(config), "init", "--quiet", "--bare", origin)
    log_dir = os.path.join(str(tmp_path), "log")
    os.mkdir(log_dir)
    recording = RECORDING_HOOK.format(log_dir=log_dir)
    for name in ("pre-receive", "update", "post-receive"):
        write_hook(os.path.join(origin, "custom_hooks", name), recording)
    source = os.path.join(str(tmp_path), "source.git")
    git(str(tmp_path), "init", "--quiet", "--bare", source)
    build = FastImport()
    build.commit("refs/heads/main", b"one\n", {b"a.txt": b"a\n"})
    build.run(source)

    env = client_env(unix_address(config))
    await run_git("-C", source, "push", ssh_url("hooked.git"), "main", env=env)

    assert refs(origin) == refs(source)
    with open(os.path.join(log_dir, "runs")) as f:
        runs = [line.split(" ", 1)[0] for line in f.read().splitlines()]
    assert runs == ["pre-receive", "update", "post-receive"]

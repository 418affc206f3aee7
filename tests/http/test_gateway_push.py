"""The HTTP gateway, write side: pushes with the real git client, through our hooks.

New branch, update, delete, tags, force push, a non-fast-forward refused, a push into an
empty repository, a push refused by a custom hook; after each, the refs match the
client's and fsck is clean. Custom hooks see the gateway's identity (GL_ID, GL_PROTOCOL).
"""

from __future__ import annotations

import os
import stat

import pytest

from tests.http.gateway_support import Gateway, assert_clone_matches, fsck, git, refs
from tests.repos import rich_repository

HOOK_ENV_KEYS = ("GL_ID", "GL_USERNAME", "GL_PROTOCOL")


def install_hook(repo: str, name: str, script: str) -> None:
    """A custom hook of the repository (`<repo>/custom_hooks/<name>`)."""
    directory = os.path.join(repo, "custom_hooks")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(script)
    os.chmod(path, stat.S_IRWXU)


def record_env_hook(out: str) -> str:
    """A pre-receive hook that writes GL_ID, GL_USERNAME and GL_PROTOCOL to `out`."""
    lines = "".join(f'echo "{key}=${key}" >> {out}\n' for key in HOOK_ENV_KEYS)
    return f"#!/bin/sh\n{lines}cat > /dev/null\n"


def read_env(out: str) -> dict[str, str]:
    with open(out, encoding="utf-8") as f:
        return dict(line.rstrip("\n").split("=", 1) for line in f)


async def commit(clone: str, message: str) -> None:
    with open(os.path.join(clone, "file.txt"), "a", encoding="utf-8") as f:
        f.write(message + "\n")
    await git("-C", clone, "add", "file.txt")
    await git("-C", clone, "commit", "--quiet", "-m", message)


async def assert_pushed(server_repo: str, clone: str, *branches: str) -> None:
    """The server's `branches` are the clone's; its refs match a fetch; fsck is clean."""
    for branch in branches:
        name = f"refs/heads/{branch}"
        assert (await refs(clone, name)) == (await refs(server_repo, name)) != {}
    await git("-C", clone, "fetch", "--quiet", "--prune", "--prune-tags", "origin")
    await assert_clone_matches(server_repo, clone)


async def cloned(gateway: Gateway, short_dir: str, name: str) -> tuple[str, str]:
    repo = gateway.repo(name)
    rich_repository(repo)
    clone = os.path.join(short_dir, "clone")
    await git("clone", "--quiet", gateway.url(name), clone)
    return repo, clone


async def test_push_branches_and_tags(gateway: Gateway, short_dir: str) -> None:
    repo, clone = await cloned(gateway, short_dir, "push.git")
    out = os.path.join(short_dir, "hook-env")
    install_hook(repo, "pre-receive", record_env_hook(out))

    # A new branch.
    await git("-C", clone, "checkout", "--quiet", "-b", "topic")
    await commit(clone, "topic 1")
    await git("-C", clone, "push", "origin", "topic")
    await assert_pushed(repo, clone, "topic")
    # Anonymous: the fixed GL_ID, no user name.
    assert read_env(out) == {"GL_ID": "user-0", "GL_USERNAME": "", "GL_PROTOCOL": "http"}

    # A fast-forward of an existing branch, and of main, in one push.
    await commit(clone, "topic 2")
    await git("-C", clone, "checkout", "--quiet", "main")
    await commit(clone, "main 1")
    await git("-C", clone, "push", "origin", "topic", "main")
    await assert_pushed(repo, clone, "topic", "main")

    # Tags: lightweight and annotated, then one deleted.
    await git("-C", clone, "tag", "light", "topic")
    await git("-C", clone, "tag", "-a", "-m", "annotated\n", "v3.0.0", "main")
    await git("-C", clone, "push", "origin", "light", "v3.0.0")
    await assert_pushed(repo, clone)
    assert (await refs(repo, "refs/tags/v3.0.0")) == (await refs(clone, "refs/tags/v3.0.0"))
    await git("-C", clone, "push", "origin", ":refs/tags/light")
    await assert_pushed(repo, clone)
    assert "refs/tags/light" not in await refs(repo)

    # A deleted branch.
    await git("-C", clone, "push", "origin", "--delete", "topic")
    await assert_pushed(repo, clone)
    assert "refs/heads/topic" not in await refs(repo)


async def test_non_fast_forward_refused_then_forced(gateway: Gateway, short_dir: str) -> None:
    repo, clone = await cloned(gateway, short_dir, "force.git")
    before = await refs(repo)
    await git("-C", clone, "reset", "--quiet", "--hard", "main~2")
    await commit(clone, "rewritten")

    refused = await git("-C", clone, "push", "origin", "main", check=False)
    assert refused.returncode != 0
    assert b"[rejected]" in refused.stderr and b"non-fast-forward" in refused.stderr
    assert await refs(repo) == before

    await git("-C", clone, "push", "--force", "origin", "main")
    await assert_pushed(repo, clone, "main")


@pytest.mark.parametrize("version", ["0", "2"])
async def test_push_into_empty_repository(gateway: Gateway, short_dir: str, version: str) -> None:
    repo = gateway.repo("group/empty.git")
    await git("init", "--bare", "--quiet", repo)
    clone = os.path.join(short_dir, "clone")
    await git("clone", "--quiet", gateway.url("group/empty.git"), clone)
    await git("-C", clone, "checkout", "--quiet", "-b", "main")
    await commit(clone, "first")
    await git("-C", clone, "-c", f"protocol.version={version}", "push", "origin", "main")
    assert await refs(repo) == await refs(clone, "refs/heads")
    await fsck(repo)
    again = os.path.join(short_dir, "again")
    await git("clone", "--quiet", gateway.url("group/empty.git"), again)
    await assert_clone_matches(repo, again)


async def test_push_refused_by_custom_hook(gateway: Gateway, short_dir: str) -> None:
    repo, clone = await cloned(gateway, short_dir, "refused.git")
    install_hook(repo, "pre-receive", "#!/bin/sh\necho 'no pushes today' >&2\nexit 1\n")
    before = await refs(repo)
    objects = sorted(os.listdir(os.path.join(repo, "objects")))
    await commit(clone, "refused")

    refused = await git("-C", clone, "push", "origin", "main", check=False)
    assert refused.returncode != 0
    assert b"remote: no pushes today" in refused.stderr
    assert b"pre-receive hook declined" in refused.stderr
    assert await refs(repo) == before
    # The pushed objects stayed in the quarantine, which is gone.
    assert sorted(os.listdir(os.path.join(repo, "objects"))) == objects
    await fsck(repo)

"""Pushes with the real git through `trio-gitaly ssh`: every kind of ref update, the
ones git or the server refuse, and a push into an empty repository.

After each, the server has exactly the refs it should and passes `git fsck`.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import storage_path
from tests.repos import FastImport, git, rich_repository
from tests.transport_helpers import (
    client_env,
    fsck,
    quarantine_dirs,
    refs,
    run_git,
    ssh_url,
    unix_address,
)
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer


@pytest.fixture
def origin(config: Config) -> str:
    """The server's rich repository, default/origin.git."""
    path = os.path.join(storage_path(config), "origin.git")
    rich_repository(path)
    return path


@pytest.fixture
def clone(origin: str, tmp_path: object) -> str:
    """A bare clone of `origin`, so its refs match the server's until it pushes."""
    path = os.path.join(str(tmp_path), "clone.git")
    git(origin, "clone", "--quiet", "--bare", "--no-local", origin, path)
    git(path, "remote", "set-url", "origin", ssh_url("origin.git"))
    return path


def commit(repo: str, ref: str, parent: str, name: bytes) -> str:
    """Point `ref` of `repo` at a new child of `parent` adding file `name`; its id.

    The update need not be a fast-forward (fast-import would refuse it).
    """
    build = FastImport()
    scratch = "refs/scratch/commit"
    mark = build.commit(scratch, b"Add " + name + b"\n", {name: name + b"\n"}, parents=[parent])
    oid = build.run(repo)[mark]
    git(repo, "update-ref", ref, oid)
    git(repo, "update-ref", "-d", scratch)
    return oid


def rev(repo: str, revision: str) -> str:
    return git(repo, "rev-parse", revision).decode().strip()


async def test_create_update_and_delete_a_branch(
    server: RunningServer, config: Config, origin: str, clone: str
) -> None:
    env = client_env(unix_address(config))
    # Pushes speak protocol v0 whatever the client asks for (v2 has no push yet).
    push = ("-C", clone, "-c", "protocol.version=2", "push", "origin")

    commit(clone, "refs/heads/topic", rev(clone, "main"), b"topic.txt")
    await run_git(*push, "topic", env=env)
    assert refs(origin) == refs(clone)

    commit(clone, "refs/heads/topic", rev(clone, "topic"), b"more.txt")
    await run_git(*push, "topic", env=env)
    assert refs(origin) == refs(clone)

    await run_git(*push, ":topic", env=env)
    git(clone, "update-ref", "-d", "refs/heads/topic")
    assert refs(origin) == refs(clone)
    fsck(origin)
    assert quarantine_dirs(origin) == []


async def test_push_and_delete_tags(
    server: RunningServer, config: Config, origin: str, clone: str
) -> None:
    env = client_env(unix_address(config))
    git(clone, "tag", "-a", "-m", "Release 3\n", "v3.0.0", "feature")
    git(clone, "tag", "light", "main~1")
    await run_git("-C", clone, "push", "origin", "--tags", env=env)
    assert refs(origin) == refs(clone)

    await run_git("-C", clone, "push", "origin", ":refs/tags/light", ":refs/tags/v1.0.0", env=env)
    git(clone, "tag", "-d", "light", "v1.0.0")
    assert refs(origin) == refs(clone)
    fsck(origin)


async def test_force_push_rewrites_a_branch(
    server: RunningServer, config: Config, origin: str, clone: str
) -> None:
    env = client_env(unix_address(config))
    commit(clone, "refs/heads/main", rev(clone, "main~2"), b"rewritten.txt")
    await run_git("-C", clone, "push", "origin", "+main", env=env)
    assert refs(origin) == refs(clone)
    fsck(origin)


async def test_non_fast_forward_is_rejected(
    server: RunningServer, config: Config, origin: str, clone: str
) -> None:
    env = client_env(unix_address(config))
    before = refs(origin)
    commit(clone, "refs/heads/main", rev(clone, "main~2"), b"rewritten.txt")

    refused = await run_git("-C", clone, "push", "origin", "main", env=env, check=False)
    assert refused.returncode == 1
    assert b"! [rejected]        main -> main (non-fast-forward)" in refused.stderr

    # The server's own refusal (its config denies non-fast-forwards) of a forced push.
    git(origin, "config", "receive.denyNonFastForwards", "true")
    denied = await run_git("-C", clone, "push", "origin", "+main", env=env, check=False)
    assert denied.returncode == 1
    assert b"! [remote rejected] main -> main (non-fast-forward)" in denied.stderr
    assert refs(origin) == before
    fsck(origin)
    assert quarantine_dirs(origin) == []


async def test_push_into_an_empty_repository(
    server: RunningServer, config: Config, clone: str
) -> None:
    empty = os.path.join(storage_path(config), "empty.git")
    git(storage_path(config), "init", "--bare", "--quiet", empty)
    env = client_env(unix_address(config))
    # A branch and an annotated tag (each pushed ref costs an update hook run).
    await run_git("-C", clone, "push", ssh_url("empty.git"), "main", "v2.0.0", env=env)
    assert refs(empty) == refs(clone, "refs/heads/main", "refs/tags/v2.0.0")
    fsck(empty)


async def test_push_needs_a_user(
    server: RunningServer, config: Config, origin: str, clone: str
) -> None:
    before = refs(origin)
    commit(clone, "refs/heads/topic", rev(clone, "main"), b"topic.txt")
    env = client_env(unix_address(config), "--gl-id", "")
    result = await run_git("-C", clone, "push", "origin", "topic", env=env, check=False)
    assert result.returncode != 0
    assert b"trio-gitaly ssh: empty GlId (INVALID_ARGUMENT)\n" in result.stderr
    assert refs(origin) == before

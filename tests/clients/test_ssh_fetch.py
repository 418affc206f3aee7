"""Clone, fetch and `git archive --remote` with the real git through `trio-gitaly ssh`.

After each, the client has exactly the server's refs and both repositories are sound.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import storage_path
from tests.repos import FastImport, git, rich_repository
from tests.transport_helpers import client_env, fsck, refs, run_git, ssh_url, unix_address
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer


@pytest.fixture
def origin(config: Config) -> str:
    """The server's rich repository, default/origin.git."""
    path = os.path.join(storage_path(config), "origin.git")
    rich_repository(path)
    return path


def trace_says_v2(stderr: bytes) -> bool:
    """Whether a GIT_TRACE_PACKET log shows the server answering in protocol v2."""
    return b"< version 2" in stderr


@pytest.mark.parametrize("version", ["0", "2"])
async def test_clone_in_either_protocol(
    server: RunningServer, config: Config, origin: str, tmp_path: object, version: str
) -> None:
    clone = os.path.join(str(tmp_path), "clone.git")
    env = client_env(unix_address(config), GIT_TRACE_PACKET="1")
    result = await run_git(
        "-c",
        f"protocol.version={version}",
        "clone",
        "--bare",
        ssh_url("origin.git"),
        clone,
        env=env,
    )
    assert trace_says_v2(result.stderr) == (version == "2")
    assert refs(clone) == refs(origin)
    fsck(clone)
    fsck(origin)


async def test_fetch_brings_new_history(
    server: RunningServer, config: Config, origin: str, tmp_path: object
) -> None:
    clone = os.path.join(str(tmp_path), "clone.git")
    env = client_env(unix_address(config))
    await run_git("clone", "--bare", ssh_url("origin.git"), clone, env=env)
    main = git(origin, "rev-parse", "main").decode().strip()
    build = FastImport()
    build.commit("refs/heads/main", b"More\n", {b"more.txt": b"more\n"}, parents=[main])
    build.commit("refs/heads/topic", b"Topic\n", {b"topic.txt": b"topic\n"}, parents=[main])
    build.run(origin)
    git(origin, "tag", "v3.0.0", "main")
    git(origin, "branch", "-D", "feature")

    await run_git("-C", clone, "fetch", "--prune", "origin", "+refs/*:refs/*", env=env)
    assert refs(clone) == refs(origin)
    fsck(clone)


@pytest.mark.parametrize("version", ["0", "2"])
async def test_shallow_clone(
    server: RunningServer, config: Config, origin: str, tmp_path: object, version: str
) -> None:
    clone = os.path.join(str(tmp_path), "shallow.git")
    env = client_env(unix_address(config))
    protocol = f"protocol.version={version}"
    await run_git(
        "-c", protocol, "clone", "--bare", "--depth", "1", "--no-single-branch",
        ssh_url("origin.git"), clone, env=env,
    )  # fmt: skip
    assert git(clone, "rev-list", "--count", "main").strip() == b"1"
    with open(os.path.join(clone, "shallow"), encoding="ascii") as f:
        assert git(origin, "rev-parse", "main").decode() in f.read()
    branches = ("for-each-ref", "refs/heads")
    assert git(clone, *branches) == git(origin, *branches)
    fsck(clone)

    # Deepening fetches the rest of the history, and with it every tag.
    await run_git(
        "-C", clone, "-c", protocol, "fetch", "--unshallow", "origin", "+refs/*:refs/*", env=env
    )
    assert not os.path.exists(os.path.join(clone, "shallow"))
    assert refs(clone) == refs(origin)
    fsck(clone)


async def test_partial_clone_fetches_blobs_lazily(
    server: RunningServer, config: Config, origin: str, tmp_path: object
) -> None:
    clone = os.path.join(str(tmp_path), "partial.git")
    env = client_env(unix_address(config))
    await run_git("clone", "--bare", "--filter=blob:none", ssh_url("origin.git"), clone, env=env)
    missing = git(clone, "rev-list", "--objects", "--all", "--missing=print").decode().split()
    assert any(line.startswith("?") for line in missing), "no blob was left out"
    assert refs(clone) == refs(origin)
    fsck(clone)

    # Reading a blob fetches it on demand (another upload-pack call).
    readme = await run_git("-C", clone, "cat-file", "-p", "main:README.md", env=env)
    assert readme.stdout == b"# readme\n"


async def test_archive_remote(
    server: RunningServer, config: Config, origin: str, tmp_path: object
) -> None:
    env = client_env(unix_address(config))
    for treeish in ("main", "v1.0.0"):
        remote = await run_git(
            "archive", f"--remote={ssh_url('origin.git')}", "--format=tar", treeish,
            env=env, cwd=str(tmp_path),
        )  # fmt: skip
        assert remote.stdout == git(origin, "archive", "--format=tar", treeish)

    bad = await run_git(
        "archive", f"--remote={ssh_url('origin.git')}", "no-such-ref",
        env=env, cwd=str(tmp_path), check=False,
    )  # fmt: skip
    assert bad.returncode != 0
    assert b"no such ref: no-such-ref" in bad.stderr


@pytest.mark.parametrize("version", ["0", "2"])
async def test_clone_an_empty_repository(
    server: RunningServer, config: Config, tmp_path: object, version: str
) -> None:
    empty = os.path.join(storage_path(config), "empty.git")
    git(storage_path(config), "init", "--bare", "--quiet", empty)
    clone = os.path.join(str(tmp_path), "empty-clone.git")
    env = client_env(unix_address(config))
    result = await run_git(
        "-c", f"protocol.version={version}", "clone", "--bare", ssh_url("empty.git"), clone, env=env
    )
    assert b"cloned an empty repository" in result.stderr
    assert git(clone, "for-each-ref") == b""
    fsck(clone)

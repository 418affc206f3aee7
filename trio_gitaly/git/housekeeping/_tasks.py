"""The git commands of housekeeping: repack, prune, pack-refs, commit-graph, config fixes.

Each step is one or two git commands through the command factory, so each runs in its
own process group inside the caller's cancel scope: cancelling a step kills its git.
The argv builders are pure functions, which is where the git-version gating lives.

Facts: Gitaly's internal/git/housekeeping/{objects,commit_graph,clean_stale_data}.go and
internal/git/housekeeping/manager/optimize_repository.go.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import re
import time
from typing import TYPE_CHECKING, Final

import trio

from trio_gitaly.errors import internal
from trio_gitaly.git.args import GitCommand
from trio_gitaly.git.housekeeping._info import FULL_REPACK_TIMESTAMP_FILENAME
from trio_gitaly.git.housekeeping._strategy import (
    CommitGraphConfig,
    PruneConfig,
    RepackConfig,
    RepackStrategy,
)
from trio_gitaly.git.version import GitVersion

if TYPE_CHECKING:
    from trio_gitaly.git.command import CommandFactory

#: `git repack --cruft` and `--cruft-expiration` appeared in git 2.37.
CRUFT_PACKS_VERSION: Final = GitVersion(2, 37, 0)
#: Each pack at least this many times the objects of the next smaller one.
GEOMETRIC_FACTOR: Final = 2
#: `commit-graph write --split`: merge layers when a new one is over 1/4 of the one below.
COMMIT_GRAPH_SIZE_MULTIPLE: Final = 4
# Config keys Gitaly once wrote and no longer wants (a remote's URL may hold credentials).
_OBSOLETE_CONFIG_KEYS: Final = (
    r"^(http\..+\.extraheader|remote\..+\.(fetch|mirror|prune|url)"
    r"|core\.(commitgraph|sparsecheckout|splitindex))$"
)
# Written by the long-gone SetFullPath RPC.
_FULL_PATH_CONFIG_KEY: Final = "gitlab.fullpath"
_SECTION_HEADER_RE: Final = re.compile(rb"\s*\[.*\]\s*")


def git_date(epoch_s: float) -> str:
    """`epoch_s` as an RFC 2822 date in UTC, which git's date parser reads exactly."""
    return email.utils.formatdate(epoch_s, usegmt=True)


def repack_flags(cfg: RepackConfig, version: GitVersion) -> list[str]:
    """The flags of `git repack` for a full or geometric `cfg` on git `version`."""
    if cfg.strategy is RepackStrategy.FULL_WITH_CRUFT:
        if version >= CRUFT_PACKS_VERSION:
            flags = ["--cruft", "--pack-kept-objects", "-l", "-d"]
            if cfg.cruft_expire_before is not None:
                flags.append(f"--cruft-expiration={git_date(cfg.cruft_expire_before)}")
        else:
            # Before cruft packs: unreachable objects are loosened (keeping the pack's
            # mtime) and those past the expiry dropped, so a later prune deletes the same.
            flags = ["-A", "-l", "-d", "--pack-kept-objects"]
            if cfg.cruft_expire_before is not None:
                flags.append(f"--unpack-unreachable={git_date(cfg.cruft_expire_before)}")
    elif cfg.strategy is RepackStrategy.FULL_WITH_UNREACHABLE:
        flags = ["-a", "-l", "-d", "--keep-unreachable"]
    elif cfg.strategy is RepackStrategy.GEOMETRIC:
        flags = [f"--geometric={GEOMETRIC_FACTOR}", "-d", "-l"]
    else:
        raise ValueError(f"{cfg.strategy} is not a git-repack strategy")
    if cfg.write_multi_pack_index:
        flags.append("--write-midx")
    return flags


def repack_config(*, is_object_pool: bool, write_bitmap: bool) -> list[tuple[str, str]]:
    """`-c` options of commands that write packs: delta islands and bitmaps.

    Delta islands keep the deltas of one fork's objects from depending on objects other
    forks cannot see, so every fork's fetch is served from the pack as is.
    """
    # The parenthesised part of a matching ref names its island: one island for the
    # heads and tags of the repository (or of the pool's source), the core of the pack.
    if is_object_pool:
        islands, core = ["refs/remotes/origin/he(a)ds", "refs/remotes/origin/t(a)gs"], "a"
    else:
        islands, core = ["r(e)fs/heads", "r(e)fs/tags"], "e"
    return [
        ("repack.useDeltaIslands", "true"),
        ("repack.writeBitmaps", "true" if write_bitmap else "false"),
        ("pack.writeBitmapLookupTable", "true"),
        *(("pack.island", island) for island in islands),
        ("pack.islandCore", core),
    ]


async def repack_objects(
    git: CommandFactory, repo_path: str, cfg: RepackConfig, *, is_object_pool: bool
) -> None:
    """Repack the repository's objects as `cfg` says.

    A full repack first touches the full-repack timestamp, even if the repack then fails:
    a huge repository that keeps failing must not be retried on every run.

    Raises:
        GitCommandError: a git command failed.

    Cancellation:
        git is killed; git writes packs under temporary names, so nothing half-written
        is ever used, and the next run removes leftovers after their grace period.
    """
    if cfg.is_full:
        await trio.to_thread.run_sync(update_full_repack_timestamp, repo_path, time.time())
    if cfg.strategy is RepackStrategy.INCREMENTAL_WITH_UNREACHABLE:
        # No git-repack mode packs every loose object regardless of reachability: ask
        # pack-objects directly, with no revisions on stdin, so all loose objects count
        # as "unreachable" and are packed; then drop the loose copies.
        pack_objects = GitCommand(
            "pack-objects",
            flags=[
                "--pack-loose-unreachable",
                "--local",
                "--incremental",
                "--non-empty",
                "--quiet",
            ],
            args=[os.path.join(repo_path, "objects", "pack", "pack")],
        )
        await git.run(pack_objects, repo_path=repo_path, stdin=b"")
        await git.run(
            GitCommand("prune-packed", flags=["--quiet"], end_of_options=False),
            repo_path=repo_path,
        )
        return
    await git.run(
        GitCommand("repack", flags=repack_flags(cfg, git.binary.version), end_of_options=False),
        repo_path=repo_path,
        config=repack_config(is_object_pool=is_object_pool, write_bitmap=cfg.write_bitmap),
    )


async def prune_objects(git: CommandFactory, repo_path: str, cfg: PruneConfig) -> None:
    """Delete unreachable loose objects older than the expiry, and packed loose copies.

    The expiry protects objects a concurrent command has written but not yet made
    reachable. Cancellation: git is killed; whatever it deleted stays deleted.
    """
    cmd = GitCommand(
        "prune", flags=[f"--expire={git_date(cfg.expire_before)}"], end_of_options=False
    )
    await git.run(cmd, repo_path=repo_path)


async def pack_references(git: CommandFactory, repo_path: str) -> None:
    """`git pack-refs --all`. Cancellation: git is killed; its lock goes with it."""
    cmd = GitCommand("pack-refs", flags=["--all"], end_of_options=False)
    await git.run(cmd, repo_path=repo_path)


async def write_commit_graph(git: CommandFactory, repo_path: str, cfg: CommitGraphConfig) -> None:
    """Write a split commit-graph with Bloom filters, replacing the chain if asked.

    Cancellation: git is killed; the chain file is switched atomically, so the old
    graph stays in use.
    """
    flags = [
        "--reachable",
        "--changed-paths",  # Bloom filters
        f"--size-multiple={COMMIT_GRAPH_SIZE_MULTIPLE}",
        "--split=replace" if cfg.replace_chain else "--split",
    ]
    cmd = GitCommand("commit-graph", action="write", flags=flags, end_of_options=False)
    await git.run(cmd, repo_path=repo_path)


def update_full_repack_timestamp(repo_path: str, epoch_s: float) -> None:
    """Set the full-repack timestamp file's mtime to `epoch_s`, creating it atomically."""
    path = os.path.join(repo_path, FULL_REPACK_TIMESTAMP_FILENAME)
    try:
        os.utime(path, (epoch_s, epoch_s))
        return
    except FileNotFoundError:
        pass
    # Created under another name and renamed, so no reader sees it with a wrong mtime.
    temporary = f"{path}-{os.getpid()}-{time.monotonic_ns()}"
    try:
        with open(temporary, "xb"):
            pass
        os.utime(temporary, (epoch_s, epoch_s))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


async def remove_obsolete_config(git: CommandFactory, repo_path: str) -> dict[str, int]:
    """Unset obsolete config keys; returns {cleanup name: 1 if anything was removed}.

    Cancellation: git is killed; each unset is one atomic rewrite of the config by git.
    """
    return {
        "configkeys": await _unset_matching(git, repo_path, _OBSOLETE_CONFIG_KEYS),
        "configfullpath": await _unset_matching(git, repo_path, _FULL_PATH_CONFIG_KEY),
    }


async def prune_empty_config_sections(git: CommandFactory, repo_path: str) -> int:
    """Drop section headers with no keys from the config file; returns how many.

    The rewrite goes through `config.lock`, as git's own writes do, and is checked with
    `git config --list` to change nothing git sees before it replaces the config.

    Raises:
        GitalyError: INTERNAL when the lock is taken or the check finds a difference.

    Cancellation:
        The config is untouched unless the final rename happened; our lock is removed.
    """
    config_path = os.path.join(repo_path, "config")
    data = await trio.to_thread.run_sync(_read, config_path)
    kept, removed = _without_empty_sections(data)
    if not removed:
        return 0
    lock = config_path + ".lock"
    try:
        await trio.to_thread.run_sync(_write_exclusive, lock, kept, config_path)
    except FileExistsError:
        raise internal("pruning config sections: config is locked", path=lock) from None
    try:
        listings = []
        for path in (config_path, lock):
            cmd = GitCommand("config", flags=[f"--file={path}", "--list"], end_of_options=False)
            listings.append((await git.run(cmd, repo_path=None)).stdout)
        if listings[0] != listings[1]:
            raise internal("section pruning has caused config change", path=config_path)
        await trio.to_thread.run_sync(os.replace, lock, config_path)
    finally:
        _remove_if_exists(lock)
    return removed


async def _unset_matching(git: CommandFactory, repo_path: str, pattern: str) -> int:
    config = f"--file={os.path.join(repo_path, 'config')}"
    found = await git.run(
        GitCommand("config", flags=[config, "--name-only", "--get-regexp"], args=[pattern]),
        repo_path=repo_path,
        check=False,
    )
    if found.returncode == 1:
        return 0  # no such key
    if found.returncode != 0:
        raise internal(f"getting matching config keys: exit status {found.returncode}")
    for key in dict.fromkeys(found.stdout.decode("utf-8", "replace").split()):
        unset = GitCommand("config", flags=[config, "--unset-all"], args=[key])
        await git.run(unset, repo_path=repo_path)
    return 1


def _without_empty_sections(data: bytes) -> tuple[bytes, int]:
    """The config without headers followed directly by another header or the end."""
    lines = data.splitlines(keepends=True)
    kept = [
        line
        for index, line in enumerate(lines)
        if not (
            _SECTION_HEADER_RE.fullmatch(line)
            and (index + 1 == len(lines) or _SECTION_HEADER_RE.fullmatch(lines[index + 1]))
        )
    ]
    return b"".join(kept), len(lines) - len(kept)


def _remove_if_exists(path: str) -> None:
    # Cleanup on the way out, cancellation included: no await allowed, and one unlink of
    # a file we created is quick.
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _write_exclusive(path: str, data: bytes, like: str) -> None:
    """Create `path` (failing if it exists) with `data` and `like`'s mode, synced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, os.stat(like).st_mode & 0o777)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())

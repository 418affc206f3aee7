"""Repositories in the shapes housekeeping cares about, made and inspected with git itself."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

from tests.repos import GIT_ENV, FastImport, git, rich_repository


def new_repository(path: str, *, packs: int = 0, loose_blobs: int = 0) -> None:
    """rich_repository at `path`, plus `packs` packs and `loose_blobs` unreachable blobs."""
    rich_repository(path)
    add_packs(path, packs)
    add_loose_blobs(path, loose_blobs)


def add_packs(path: str, count: int, *, prefix: str = "packed") -> None:
    """`count` new packs, each holding a new root commit on a branch of its own."""
    for index in range(count):
        build = FastImport()
        stamp = f"{prefix}-{index}-{time.monotonic_ns()}".encode()
        build.commit(f"refs/heads/{prefix}-{index}", stamp + b"\n", {b"f": stamp}, parents=[])
        build.run(path)  # few objects: fast-import leaves them loose
        git(path, "repack", "-d", "-q")  # the loose reachable objects into one new pack


def add_loose_blobs(path: str, count: int, *, age_s: float = 0) -> list[str]:
    """`count` new unreachable loose blobs, last modified `age_s` ago; their ids."""
    if not count:
        return []
    with tempfile.TemporaryDirectory() as scratch:
        files = []
        stamp = time.monotonic_ns()
        for index in range(count):
            name = os.path.join(scratch, str(index))
            with open(name, "w") as file:
                file.write(f"loose blob {index} {stamp}\n")
            files.append(name)
        out = git(path, "hash-object", "-w", "--stdin-paths", input="\n".join(files).encode())
    oids = out.decode().split()
    if age_s:
        for oid in oids:
            set_object_age(path, oid, age_s)
    return oids


def add_loose_refs(path: str, count: int, target: str = "HEAD") -> None:
    """`count` new loose references to `target`."""
    updates = "".join(
        f"create refs/heads/extra-{i}-{time.monotonic_ns()} {target}\n" for i in range(count)
    )
    git(path, "update-ref", "--stdin", input=updates.encode())


def unreachable_commit(path: str, message: str, *, age_s: float = 0) -> str:
    """A new loose commit no reference points to, last modified `age_s` ago."""
    tree = git(path, "rev-parse", "HEAD^{tree}").decode().strip()
    oid = git(path, "commit-tree", tree, "-m", message).decode().strip()
    if age_s:
        set_object_age(path, oid, age_s)
    return oid


def set_object_age(path: str, oid: str, age_s: float) -> None:
    """Make loose object `oid` look last modified `age_s` ago."""
    when = time.time() - age_s
    os.utime(os.path.join(path, "objects", oid[:2], oid[2:]), (when, when))


def object_counts(path: str) -> tuple[int, int]:
    """(loose objects, packs), as `git count-objects -v` counts them."""
    fields = dict(
        line.split(": ", 1) for line in git(path, "count-objects", "-v").decode().splitlines()
    )
    return int(fields["count"]), int(fields["packs"])


def all_objects(path: str) -> set[str]:
    """Every object id in the repository, loose or packed, reachable or not."""
    out = git(path, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
    return set(out.decode().split())


def references(path: str) -> str:
    """Every reference with its target."""
    return git(path, "for-each-ref", "--format=%(refname) %(objectname)").decode()


def loose_refs(path: str) -> list[str]:
    """Files under refs/."""
    found = []
    for root, _, files in os.walk(os.path.join(path, "refs")):
        found += [os.path.relpath(os.path.join(root, f), path) for f in files]
    return found


def assert_fsck_clean(path: str) -> None:
    """`git fsck` finds nothing wrong (dangling objects are fine), the graph included."""
    git(path, "fsck", "--strict", "--no-dangling")
    if os.path.exists(os.path.join(path, "objects", "info", "commit-graphs")):
        git(path, "commit-graph", "verify")


def exists(path: str, oid: str) -> bool:
    """Whether object `oid` is in the repository."""
    result = subprocess.run(
        ["git", "-C", path, "cat-file", "-e", oid], env=GIT_ENV, capture_output=True
    )
    return result.returncode == 0

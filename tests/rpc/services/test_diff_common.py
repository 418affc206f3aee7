"""Helpers the DiffService tests share (CommitDiff answers, the git reference, small
repositories), and the request validation every two-commit RPC does alike."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import trio

from tests.helpers import Client, storage_path
from tests.helpers import new_path as new_repo
from tests.helpers import repository as repo
from tests.repos import FastImport, git
from trio_gitaly.config import Config
from trio_gitaly.nursery_tree import RunningServer, serve
from trio_gitaly.rpc.gen.gitaly import diff_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

SERVICE = "/gitaly.DiffService/"
METHOD = SERVICE + "CommitDiff"
FORMATS = ["sha1", "sha256"]
MSG = 5 * 1024  # Gitaly's patch piece size
Request = pb.CommitDiffRequest


@dataclass
class File:
    """One file of a CommitDiff answer, its messages joined."""

    from_path: bytes = b""
    to_path: bytes = b""
    from_id: str = ""
    to_id: str = ""
    old_mode: int = 0
    new_mode: int = 0
    binary: bool = False
    patch: bytes = b""
    overflow_marker: bool = False
    collapsed: bool = False
    too_large: bool = False
    messages: int = field(default=1, compare=False)


async def commit_diff(client: Client, request: pb.CommitDiffRequest) -> list[File]:
    responses: list[pb.CommitDiffResponse] = await client.stream(
        METHOD, request, pb.CommitDiffResponse
    )
    files: list[File] = []
    current: File | None = None
    for response in responses:
        if current is None:
            current = File(
                from_path=response.from_path,
                to_path=response.to_path,
                from_id=response.from_id,
                to_id=response.to_id,
                old_mode=response.old_mode,
                new_mode=response.new_mode,
                binary=response.binary,
                patch=response.raw_patch_data,
                overflow_marker=response.overflow_marker,
                collapsed=response.collapsed,
                too_large=response.too_large,
            )
        else:
            # Later pieces carry patch data only.
            assert response.from_path == b"" and response.from_id == "" and response.new_mode == 0
            current.patch += response.raw_patch_data
            current.messages += 1
        if response.end_of_patch:
            # Every piece but the last is exactly one message's worth.
            assert len(response.raw_patch_data) <= MSG
            assert len(current.patch) - len(response.raw_patch_data) == (current.messages - 1) * MSG
            files.append(current)
            current = None
    assert current is None, "a patch without end_of_patch"
    return files


def gitaly_path(path: bytes) -> bytes:
    """`path` as Gitaly reports it: git quotes BEL and VT as "\\a" and "\\v", which Gitaly's
    unquoting does not know and leaves as a backslash and a letter."""
    return path.replace(b"\x07", b"\\a").replace(b"\x0b", b"\\v")


def raw_entries(path: str, *args: str) -> list[File]:
    """The files of `git diff --raw -z <args>` (flags, commits, paths), without patches;
    a type change as a deletion and an addition (Gitaly's rule)."""
    fmt = git(path, "rev-parse", "--show-object-format").decode().strip()
    zero = "0" * (40 if fmt == "sha1" else 64)
    tokens = git(path, "diff", "--raw", "-z", "--no-abbrev", *args).split(b"\0")
    entries: list[File] = []
    index = 0
    while index < len(tokens) and tokens[index].startswith(b":"):
        old_mode, new_mode, from_id, to_id, status = tokens[index][1:].decode().split(" ")
        from_path = tokens[index + 1]
        to_path = from_path
        index += 2
        if status[0] in "RC":
            to_path = tokens[index]
            index += 1
        from_path, to_path = gitaly_path(from_path), gitaly_path(to_path)
        old, new = int(old_mode, 8), int(new_mode, 8)
        if status == "T":
            entries.append(File(from_path, from_path, from_id, zero, old, 0))
            entries.append(File(from_path, from_path, zero, to_id, 0, new))
        else:
            entries.append(File(from_path, to_path, from_id, to_id, old, new))
    return entries


def reference(
    path: str, left: str, right: str, *flags: str, paths: tuple[str, ...] = ()
) -> list[File]:
    """What CommitDiff must answer, from the git CLI."""
    entries = raw_entries(path, "--find-renames=30%", *flags, left, right, "--", *paths)
    output = git(
        path, "-c", "diff.noprefix=false", "diff", "--full-index", "--find-renames=30%",
        *flags, left, right, "--", *paths,
    )  # fmt: skip
    sections: list[list[bytes]] = []
    for line in output.splitlines(keepends=True):
        if line.startswith(b"diff --git "):
            sections.append([])
        else:
            sections[-1].append(line)
    assert len(sections) == len(entries)
    for entry, lines in zip(entries, sections, strict=True):
        start = next(
            (i for i, ln in enumerate(lines) if ln.startswith((b"@@", b"Binary files "))),
            len(lines),
        )
        entry.patch = b"".join(lines[start:])
        entry.binary = entry.patch.startswith(b"Binary files ")
    return entries


@asynccontextmanager
async def own_server(config: Config, connect: Callable[..., Client]) -> AsyncIterator[Client]:
    """A server of this block's own: pytest-trio gives every hypothesis example the async
    fixtures of the first, whose server is stopped by then."""
    async with trio.open_nursery() as nursery:
        running: RunningServer = await nursery.start(serve, config)
        try:
            yield connect(running.addresses["tcp"][0])
        finally:
            nursery.cancel_scope.cancel()


def two_commits(
    config: Config,
    name: str,
    before: dict[bytes, Any],
    after: dict[bytes, Any],
    *,
    object_format: str = "sha1",
    executable: frozenset[bytes] = frozenset(),
    symlinks_before: frozenset[bytes] = frozenset(),
) -> tuple[str, str, str]:
    build = FastImport(object_format=object_format)
    left = build.commit("refs/heads/main", b"left\n", before, parents=[], symlinks=symlinks_before)
    right = build.commit(
        "refs/heads/main", b"right\n", after, parents=[left], deleteall=True, executable=executable
    )
    path = new_repo(config, name)
    marks = build.run(path)
    return path, marks[left], marks[right]


def blob_id(path: str, data: bytes) -> str:
    return git(path, "hash-object", "--stdin", input=data).decode().strip()


# -- validation shared by CommitDiff, CommitDelta, DiffStats, RawDiff and RawPatch -------

LEFT_RIGHT_RPCS = {
    "CommitDiff": (pb.CommitDiffRequest, pb.CommitDiffResponse),
    "CommitDelta": (pb.CommitDeltaRequest, pb.CommitDeltaResponse),
    "DiffStats": (pb.DiffStatsRequest, pb.DiffStatsResponse),
    "RawDiff": (pb.RawDiffRequest, pb.RawDiffResponse),
    "RawPatch": (pb.RawPatchRequest, pb.RawPatchResponse),
}
# How a git that fails (an unknown commit) is reported: the parsed RPCs call it a failed
# precondition, the raw ones an internal error of the command (Gitaly's codes).
GIT_FAILURE = {
    "CommitDiff": (grpc.StatusCode.FAILED_PRECONDITION, "exit status 128"),
    "CommitDelta": (grpc.StatusCode.FAILED_PRECONDITION, "exit status 128"),
    "DiffStats": (grpc.StatusCode.FAILED_PRECONDITION, "exit status 128"),
    "RawDiff": (grpc.StatusCode.INTERNAL, "cmd: exit status 128"),
    "RawPatch": (grpc.StatusCode.INTERNAL, "cmd: exit status 128"),
}


@pytest.mark.parametrize("rpc", list(LEFT_RIGHT_RPCS))
async def test_left_right_validation(client: Client, config: Config, rpc: str) -> None:
    request_type, response_type = LEFT_RIGHT_RPCS[rpc]
    _, left, right = two_commits(config, "v.git", {b"a": b"1\n"}, {b"a": b"2\n"})
    dash = "--output=/tmp/x"
    dash_arg = f"{dash}..{right}" if rpc == "RawPatch" else dash
    failed = GIT_FAILURE[rpc]
    cases: list[tuple[Any, grpc.StatusCode, str]] = [
        (request_type(), grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (
            request_type(repository=shared_pb2.Repository(storage_name="fake", relative_path="p")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "storage name not found",
        ),
        (
            request_type(
                repository=repo("missing.git"), left_commit_id=left, right_commit_id=right
            ),
            grpc.StatusCode.NOT_FOUND,
            "repository not found",
        ),
        (
            request_type(repository=repo("v.git"), left_commit_id=left),
            grpc.StatusCode.INVALID_ARGUMENT,
            "empty RightCommitId",
        ),
        (
            request_type(repository=repo("v.git"), right_commit_id=right),
            grpc.StatusCode.INVALID_ARGUMENT,
            "empty LeftCommitId",
        ),
        (
            request_type(repository=repo("v.git")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "empty LeftCommitId",
        ),
        (
            request_type(repository=repo("v.git"), left_commit_id="1" * 40, right_commit_id=right),
            *failed,
        ),
        (
            request_type(repository=repo("v.git"), left_commit_id=left, right_commit_id="nope"),
            *failed,
        ),
        (
            request_type(repository=repo("v.git"), left_commit_id=dash, right_commit_id=right),
            grpc.StatusCode.INTERNAL,
            f"cmd: positional arg \"{dash_arg}\" cannot start with dash '-': invalid argument",
        ),
    ]
    # A repository without commits knows no revision at all.
    git(storage_path(config), "init", "--bare", "--quiet", "empty.git")
    cases.append(
        (
            request_type(
                repository=repo("empty.git"), left_commit_id="HEAD", right_commit_id="HEAD"
            ),
            *failed,
        )
    )
    for request, code, message in cases:
        error = await client.stream_error(SERVICE + rpc, request, response_type)
        assert (error.code(), error.details()) == (code, message), request
    assert not os.path.exists("/tmp/x")

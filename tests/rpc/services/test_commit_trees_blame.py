"""CommitService.RawBlame over a real server, compared with `git blame --porcelain`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings

from tests.helpers import Client, error_detail
from tests.repos import GIT_ENV, FastImport, build_history, histories, rich_repository
from tests.rpc.services.test_commit_trees_entry import ls_tree, new_path, own_server, repo
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import commit_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import errors_pb2, shared_pb2

SERVICE = "/gitaly.CommitService/"
CHUNK = 128 * 1024
FORMATS = ["sha1", "sha256"]
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def git_blame(path: str, revision: str, file_path: bytes, blame_range: bytes = b"") -> bytes:
    """`git blame -p [-L range] <revision> -- <path>`: the reference output."""
    args = [b"git", b"-C", path.encode(), b"blame", b"-p"]
    if blame_range:
        args.append(b"-L" + blame_range)
    args += [revision.encode(), b"--", file_path]
    return subprocess.run(args, check=True, capture_output=True, env=GIT_ENV).stdout


async def raw_blame(client: Client, **fields: Any) -> bytes:
    responses: list[pb.RawBlameResponse] = await client.stream(
        SERVICE + "RawBlame", pb.RawBlameRequest(**fields), pb.RawBlameResponse, timeout=60
    )
    assert all(0 < len(r.data) <= CHUNK for r in responses)
    return b"".join(r.data for r in responses)


@pytest.mark.parametrize("object_format", FORMATS)
async def test_raw_blame_matches_git(client: Client, config: Config, object_format: str) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    for revision in ("main", "feature", "v1.0.0"):
        for _, kind, _, file_path in ls_tree(path, revision, "-r"):
            if kind != b"blob" or file_path == b"large.bin":
                continue
            data = await raw_blame(
                client, repository=repo("rich.git"), revision=revision.encode(), path=file_path
            )
            assert data == git_blame(path, revision, file_path), (revision, file_path)
    for blame_range in (b"1,1", b"2,3", b"1,3", b"3,3"):
        data = await raw_blame(
            client,
            repository=repo("rich.git"),
            revision=b"feature",
            path=b"docs/guide.md",
            range=blame_range,
        )
        assert data == git_blame(path, "feature", b"docs/guide.md", blame_range)
    # Relative paths that stay inside are git's business.
    data = await raw_blame(
        client, repository=repo("rich.git"), revision=b"main", path=b"docs/../README.md"
    )
    assert data == git_blame(path, "main", b"README.md")


async def test_raw_blame_streams_large_output(client: Client, config: Config) -> None:
    path = new_path(config, "large.git")
    rich_repository(path)
    expected = git_blame(path, "main", b"large.bin")
    assert len(expected) > 4 * CHUNK
    responses: list[pb.RawBlameResponse] = await client.stream(
        SERVICE + "RawBlame",
        pb.RawBlameRequest(repository=repo("large.git"), revision=b"main", path=b"large.bin"),
        pb.RawBlameResponse,
        timeout=60,
    )
    assert all(len(r.data) == CHUNK for r in responses[:-1])
    assert b"".join(r.data for r in responses) == expected


async def test_raw_blame_empty_file(client: Client, config: Config) -> None:
    path = new_path(config, "empty.git")
    build = FastImport()
    build.commit("refs/heads/main", b"a\n", {b"path": b""}, parents=[])
    build.commit("refs/heads/main", b"b\n", {b"other": b"x"})
    build.run(path)
    responses = await client.stream(
        SERVICE + "RawBlame",
        pb.RawBlameRequest(repository=repo("empty.git"), revision=b"main", path=b"path"),
        pb.RawBlameResponse,
    )
    assert responses == []


async def test_raw_blame_errors(client: Client, config: Config) -> None:
    path = new_path(config, "r.git")
    rich_repository(path)
    good = {"repository": repo("r.git"), "revision": b"main", "path": b"docs/manual.md"}

    def out_of_range(lines: int) -> pb.RawBlameError:
        return pb.RawBlameError(out_of_range=pb.RawBlameError.OutOfRangeError(actual_lines=lines))

    cases: list[tuple[dict[str, Any], grpc.StatusCode, str, Any]] = [
        ({}, INVALID, "repository not set", None),
        (
            {**good, "repository": shared_pb2.Repository(storage_name="fake", relative_path="p")},
            INVALID,
            "storage name not found",
            None,
        ),
        ({**good, "revision": b""}, INVALID, "empty revision", None),
        ({**good, "path": b""}, INVALID, "empty Path", None),
        ({**good, "revision": b"--output=/meow"}, INVALID, "revision can't start with '-'", None),
        ({**good, "range": b"foo"}, INVALID, "invalid Range", None),
        ({**good, "range": b"1,2\n"}, INVALID, "invalid Range", None),
        ({**good, "range": b"-1,2"}, INVALID, "invalid Range", None),
        (
            {**good, "path": b"im/gonna/../../../escape"},
            INVALID,
            "path escapes repository root",
            None,
        ),
        ({**good, "path": b"/etc/passwd"}, INVALID, "path escapes repository root", None),
        (
            {**good, "range": b"4,4"},
            INVALID,
            "range is outside of the file length",
            out_of_range(3),
        ),
        (
            {**good, "path": b"link", "range": b"2,2"},
            INVALID,
            "range is outside of the file length",
            out_of_range(1),
        ),
        (
            {**good, "path": b"does-not-exist", "range": b"1,1"},
            grpc.StatusCode.NOT_FOUND,
            "path not found in revision",
            pb.RawBlameError(path_not_found=errors_pb2.PathNotFoundError(path=b"does-not-exist")),
        ),
        (
            {**good, "path": b"caf\xe9.missing"},
            grpc.StatusCode.NOT_FOUND,
            "path not found in revision",
            pb.RawBlameError(path_not_found=errors_pb2.PathNotFoundError(path=b"caf\xe9.missing")),
        ),
        (
            {**good, "revision": b"does-not-exist"},
            grpc.StatusCode.INTERNAL,
            "blaming file: exit status 128",
            None,
        ),
    ]
    for fields, code, message, detail in cases:
        error = await client.stream_error(
            SERVICE + "RawBlame", pb.RawBlameRequest(**fields), pb.RawBlameResponse
        )
        assert (error.code(), error.details()) == (code, message), fields
        if detail is not None:
            assert error_detail(error, pb.RawBlameError) == detail


@given(history=histories(max_commits=5))
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_raw_blame_random_histories(
    config: Config,
    connect: Callable[..., Client],
    history: list,  # type: ignore[type-arg]
) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = new_path(config, name)
    commits = build_history(path, history)
    tip = commits[len(commits) - 1]
    async with own_server(config, connect) as client:
        for _, kind, _, file_path in ls_tree(path, tip, "-r")[:4]:
            if kind == b"blob":
                data = await raw_blame(
                    client, repository=repo(name), revision=tip.encode(), path=file_path
                )
                assert data == git_blame(path, tip, file_path)

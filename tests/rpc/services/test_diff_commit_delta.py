"""DiffService.CommitDelta over a real server, compared with `git diff --raw -z`."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Client
from tests.repos import SUBMODULE, build_history, histories, rich_repository
from tests.rpc.services.test_diff_common import (
    FORMATS,
    SERVICE,
    File,
    blob_id,
    new_repo,
    own_server,
    raw_entries,
    repo,
    two_commits,
)
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import diff_pb2 as pb

METHOD = SERVICE + "CommitDelta"
THRESHOLD = 5 * 1024  # Gitaly's batch size estimate threshold


async def commit_delta(
    client: Client, name: str, left: str, right: str, paths: tuple[bytes, ...] = ()
) -> list[list[File]]:
    """The answer's batches, each delta as a File."""
    request = pb.CommitDeltaRequest(
        repository=repo(name), left_commit_id=left, right_commit_id=right, paths=paths
    )
    responses: list[pb.CommitDeltaResponse] = await client.stream(
        METHOD, request, pb.CommitDeltaResponse
    )
    return [
        [
            File(d.from_path, d.to_path, d.from_id, d.to_id, d.old_mode, d.new_mode)
            for d in response.deltas
        ]
        for response in responses
    ]


def expected_batches(files: list[File]) -> list[list[File]]:
    """Gitaly's batching: a batch goes out as soon as its estimated size passes 5 KiB."""
    batches: list[list[File]] = [[]]
    size = 0
    for file in files:
        batches[-1].append(file)
        size += len(file.from_id) + len(file.to_id) + 8 + len(file.from_path) + len(file.to_path)
        if size > THRESHOLD:
            batches.append([])
            size = 0
    return [batch for batch in batches if batch]


def reference(path: str, left: str, right: str, *paths: str) -> list[File]:
    return raw_entries(path, "--find-renames", left, right, "--", *paths)


@pytest.mark.parametrize("object_format", FORMATS)
async def test_rich_repository_matches_git(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_repo(config, "rich.git")
    oids = rich_repository(path, object_format)
    names = list(oids)
    for left in names:
        for right in names:
            got = await commit_delta(client, "rich.git", oids[left], oids[right])
            assert got == expected_batches(reference(path, oids[left], oids[right]))


async def test_upstream_cases(client: Client, config: Config) -> None:
    old, new = b"old readme content\n", b"new readme content\n"
    unique = b"this is some unique content that we use in order to identify a rename\n"
    weird = b"file\twith\nweird spaces"
    japanese = "テスト.txt".encode()
    before = {
        b"README.md": old,
        b"deleted-file": old,
        b"mode-change": old,
        b"mode-and-content-change": old,
        b"renamed-from": unique,
        weird: old,
        japanese: old,
    }
    after = {
        b"README.md": new,
        b"mode-change": old,
        b"mode-and-content-change": new,
        b"create-file": new,
        b"renamed-to": unique,
        weird: new,
        japanese: new,
    }
    path, left, right = two_commits(
        config,
        "d.git",
        before,
        after,
        executable=frozenset({b"mode-change", b"mode-and-content-change"}),
    )
    o, n, u = blob_id(path, old), blob_id(path, new), blob_id(path, unique)
    zero = "0" * 40
    expected = [
        File(b"README.md", b"README.md", o, n, 0o100644, 0o100644),
        File(b"create-file", b"create-file", zero, n, 0, 0o100644),
        File(b"deleted-file", b"deleted-file", o, zero, 0o100644, 0),
        File(weird, weird, o, n, 0o100644, 0o100644),
        File(b"mode-and-content-change", b"mode-and-content-change", o, n, 0o100644, 0o100755),
        File(b"mode-change", b"mode-change", o, o, 0o100644, 0o100755),
        File(b"renamed-from", b"renamed-to", u, u, 0o100644, 0o100644),
        File(japanese, japanese, o, n, 0o100644, 0o100644),
    ]
    assert await commit_delta(client, "d.git", left, right) == [expected]
    assert expected == reference(path, left, right)
    paths = (b"README.md", b"deleted-file", b"mode-change", b"unchanged")
    got = await commit_delta(client, "d.git", left, right, paths)
    assert got == [[expected[0], expected[2], expected[5]]]


async def test_type_changes_and_submodules(client: Client, config: Config) -> None:
    path, left, right = two_commits(
        config,
        "t.git",
        {b"link": b"target", b"sub": (SUBMODULE, "1" * 40), b"file": b"x\n"},
        {b"link": b"now a file\n", b"sub": b"now a file\n", b"file": (SUBMODULE, "2" * 40)},
        symlinks_before=frozenset({b"link"}),
    )
    got = await commit_delta(client, "t.git", left, right)
    expected = reference(path, left, right)
    assert got == [expected]
    assert len(expected) == 6
    assert [(f.old_mode, f.new_mode) for f in expected[:2]] == [(0o100644, 0), (0, 0o160000)]


async def test_batches(client: Client, config: Config) -> None:
    files = {b"some/rather/long/directory/name/file-%04d.txt" % i: b"%d\n" % i for i in range(150)}
    path, left, right = two_commits(config, "many.git", {}, files)
    got = await commit_delta(client, "many.git", left, right)
    expected = expected_batches(reference(path, left, right))
    assert got == expected
    assert len(got) > 3


@given(history=histories(max_commits=5), data=st.data())
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_random_histories(
    config: Config,
    connect: Callable[..., Client],
    history: list,  # type: ignore[type-arg]
    data: st.DataObject,
) -> None:
    name = f"h{os.urandom(6).hex()}.git"
    path = new_repo(config, name)
    oids = list(build_history(path, history).values())
    pairs = [(data.draw(st.sampled_from(oids)), data.draw(st.sampled_from(oids))) for _ in range(3)]
    async with own_server(config, connect) as client:
        for left, right in pairs:
            got = await commit_delta(client, name, left, right)
            assert got == expected_batches(reference(path, left, right))

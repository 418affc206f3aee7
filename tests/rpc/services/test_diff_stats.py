"""DiffService.DiffStats over a real server, compared with `git diff --numstat -z`."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import Client
from tests.repos import build_history, git, histories, rich_repository
from tests.rpc.services.test_diff_common import (
    FORMATS,
    SERVICE,
    new_repo,
    own_server,
    repo,
    two_commits,
)
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import diff_pb2 as pb

METHOD = SERVICE + "DiffStats"
BATCH = 1000  # stats per message (Gitaly's)

Stat = tuple[bytes, int, int, bytes]  # path, additions, deletions, old path


async def diff_stats(client: Client, name: str, left: str, right: str) -> list[list[Stat]]:
    request = pb.DiffStatsRequest(repository=repo(name), left_commit_id=left, right_commit_id=right)
    responses: list[pb.DiffStatsResponse] = await client.stream(
        METHOD, request, pb.DiffStatsResponse
    )
    return [
        [(s.path, s.additions, s.deletions, s.old_path) for s in response.stats]
        for response in responses
    ]


def numstat(path: str, left: str, right: str) -> list[Stat]:
    """`git diff --numstat -z`: "a\\td\\tpath\\0", or "a\\td\\t\\0old\\0new\\0" for renames."""
    fields = git(path, "diff", "--numstat", "-z", left, right).split(b"\0")
    stats: list[Stat] = []
    index = 0
    while index < len(fields) and fields[index]:
        added, deleted, name = fields[index].split(b"\t", 2)
        count = (0 if added == b"-" else int(added), 0 if deleted == b"-" else int(deleted))
        if name:
            stats.append((name, *count, b""))
            index += 1
        else:
            stats.append((fields[index + 2], *count, fields[index + 1]))
            index += 3
    return stats


def batched(stats: list[Stat]) -> list[list[Stat]]:
    return [stats[start : start + BATCH] for start in range(0, len(stats), BATCH)]


@pytest.mark.parametrize("object_format", FORMATS)
async def test_rich_repository_matches_git(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_repo(config, "rich.git")
    oids = rich_repository(path, object_format)
    for left in oids.values():
        for right in oids.values():
            expected = numstat(path, left, right)
            assert await diff_stats(client, "rich.git", left, right) == batched(expected)
    # A rename has its old path; binary files count nothing.
    stats = numstat(path, oids["root"], oids["renamed"])
    assert (b"docs/manual.md", 3, 0, b"") in stats
    got = await diff_stats(client, "rich.git", oids["second"], oids["renamed"])
    assert got == [[(b"docs/manual.md", 0, 0, b"docs/guide.md")]]
    got = await diff_stats(client, "rich.git", oids["root"], oids["second"])
    assert (b"large.bin", 0, 0, b"") in got[0]


async def test_upstream_case(client: Client, config: Config) -> None:
    before = {
        b"addition": b"a\nb\nc\n",
        b"deleted-file": b"deleted contents\n",
        b"deletion": b"a\nb\ndeleteme\nc\n",
        b"multiple-changes": b"a\nb\ncdelete\ndelete\ndelete\n\nd\ne\n",
        b"replace": b"a\nb\nreplaceme\nc\n",
    }
    after = {
        b"addition": b"a\nb\naddition\nc\n",
        b"created-file": b"created contents\n",
        b"deletion": b"a\nb\nc\n",
        b"multiple-changes": b"a\naddition\nb\nc\nd\neaddition\naddition\n",
        b"replace": b"a\nb\nreplaced\nc\n",
    }
    _, left, right = two_commits(config, "s.git", before, after)
    assert await diff_stats(client, "s.git", left, right) == [
        [
            (b"addition", 1, 0, b""),
            (b"created-file", 1, 0, b""),
            (b"deleted-file", 0, 1, b""),
            (b"deletion", 0, 1, b""),
            (b"multiple-changes", 4, 5, b""),
            (b"replace", 1, 1, b""),
        ]
    ]
    assert await diff_stats(client, "s.git", left, left) == []


async def test_batches_of_a_thousand(client: Client, config: Config) -> None:
    files = {b"f%05d \xff\n\t" % i: b"%d\n" % i for i in range(2345)}
    path, left, right = two_commits(config, "many.git", {}, files)
    got = await diff_stats(client, "many.git", left, right)
    assert [len(batch) for batch in got] == [1000, 1000, 345]
    assert got == batched(numstat(path, left, right))


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
            got = await diff_stats(client, name, left, right)
            assert got == batched(numstat(path, left, right))

"""DiffService.RawDiff and RawPatch over a real server: git's bytes, unchanged, in chunks."""

from __future__ import annotations

import itertools

import pytest

from tests.helpers import Client
from tests.repos import git, rich_repository
from tests.rpc.services.test_diff_common import FORMATS, SERVICE, new_repo, repo, two_commits
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import diff_pb2 as pb

CHUNK = 128 * 1024


async def raw_diff(client: Client, name: str, left: str, right: str) -> bytes:
    request = pb.RawDiffRequest(repository=repo(name), left_commit_id=left, right_commit_id=right)
    responses: list[pb.RawDiffResponse] = await client.stream(
        SERVICE + "RawDiff", request, pb.RawDiffResponse
    )
    assert all(0 < len(r.data) <= CHUNK for r in responses)
    return b"".join(r.data for r in responses)


async def raw_patch(client: Client, name: str, left: str, right: str) -> bytes:
    request = pb.RawPatchRequest(repository=repo(name), left_commit_id=left, right_commit_id=right)
    responses: list[pb.RawPatchResponse] = await client.stream(
        SERVICE + "RawPatch", request, pb.RawPatchResponse
    )
    assert all(0 < len(r.data) <= CHUNK for r in responses)
    return b"".join(r.data for r in responses)


@pytest.mark.parametrize("object_format", FORMATS)
async def test_rich_repository_matches_git(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_repo(config, "rich.git")
    oids = rich_repository(path, object_format)
    names = list(oids)
    # Each commit against its successor, the whole history both ways, and revisions.
    pairs = [(oids[a], oids[b]) for a, b in itertools.pairwise(names)]
    pairs += [(oids["root"], "main"), ("main", oids["root"]), ("feature~1", "v1.0.0")]
    pairs += [(oids["feature"], oids["merge"]), ("main~3", "feature")]
    for left, right in pairs:
        expected = git(path, "diff", "--full-index", left, right)
        assert await raw_diff(client, "rich.git", left, right) == expected, (left, right)
        commits = f"{left}..{right}"
        expected = git(path, "format-patch", "--stdout", "--signature=GitLab", commits)
        assert await raw_patch(client, "rich.git", left, right) == expected, (left, right)


async def test_upstream_cases(client: Client, config: Config) -> None:
    path, left, right = two_commits(config, "r.git", {b"file": b"old\n"}, {b"file": b"new\n"})
    old, new = (git(path, "rev-parse", f"{c}:file").decode().strip() for c in (left, right))
    assert (
        await raw_diff(client, "r.git", left, right)
        == (
            f"diff --git a/file b/file\nindex {old}..{new} 100644\n--- a/file\n+++ b/file\n"
            "@@ -1 +1 @@\n-old\n+new\n"
        ).encode()
    )
    patch = await raw_patch(client, "r.git", left, right)
    # The date in "From" is git's fixed one; the signature is GitLab's.
    assert patch.startswith(f"From {right} Mon Sep 17 00:00:00 2001\n".encode())
    assert b"Subject: [PATCH] right\n\n---\n file | 2 +-\n" in patch
    assert f"index {old[:7]}..{new[:7]} 100644\n".encode() in patch
    assert patch.endswith(b"-old\n+new\n-- \nGitLab\n\n")
    # Nothing to show: no messages at all.
    assert await raw_diff(client, "r.git", left, left) == b""
    assert await raw_patch(client, "r.git", right, left) == b""


async def test_large_output_in_chunks(client: Client, config: Config) -> None:
    text = b"".join(b"line %07d of a long text file\n" % i for i in range(40_000))  # 1.2 MB
    path, left, right = two_commits(config, "big.git", {b"a": b"a\n"}, {b"big.txt": text})
    request = pb.RawDiffRequest(
        repository=repo("big.git"), left_commit_id=left, right_commit_id=right
    )
    responses = await client.stream(SERVICE + "RawDiff", request, pb.RawDiffResponse)
    assert len(responses) >= 10
    assert b"".join(r.data for r in responses) == git(path, "diff", "--full-index", left, right)
    patch = await raw_patch(client, "big.git", left, right)
    assert patch == git(path, "format-patch", "--stdout", "--signature=GitLab", f"{left}..{right}")

"""The HTTP gateway, read side: clone and fetch with the real git client.

Protocol v0 and v2, shallow and partial clones, an empty repository, gzip request bodies
(git's own and one made by hand); after each, the refs match and fsck is clean.
"""

from __future__ import annotations

import gzip
import os
import urllib.error
import urllib.request
from collections.abc import Mapping

import pytest
import trio

from tests.http.gateway_support import Gateway, assert_clone_matches, fsck, git, refs
from tests.repos import FastImport, rich_repository

PROTOCOLS = ["0", "2"]


def http(
    url: str, data: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with urllib (blocking): status, lower-cased headers, body."""
    request = urllib.request.Request(url, data=data, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers.items()), error.read()


def _lower(items: list[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in items}


async def request(
    url: str, data: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return await trio.to_thread.run_sync(http, url, data, headers)


def add_commit(repo: str, branch: str, parent: str, n: int) -> None:
    """A commit on the server's `branch` (made or moved), on top of `parent`."""
    build = FastImport()
    build.commit(
        f"refs/heads/{branch}",
        b"more %d\n" % n,
        {b"more-%d.txt" % n: b"%d\n" % n},
        parents=[parent],
    )
    build.run(repo)


@pytest.mark.parametrize("version", PROTOCOLS)
async def test_clone_and_fetch(gateway: Gateway, short_dir: str, version: str) -> None:
    repo = gateway.repo("group/project.git")
    oids = rich_repository(repo)
    clone = os.path.join(short_dir, "clone")
    trace = {"GIT_TRACE_PACKET": "1"}
    cloned = await git(
        "-c", f"protocol.version={version}", "clone", gateway.url("group/project.git"), clone,
        env=trace,
    )  # fmt: skip
    # upload-pack says "version 2" only when GIT_PROTOCOL from the Git-Protocol header
    # reached it; in v0 it lists its capabilities after the first ref instead.
    said_v2 = b"git< version 2" in cloned.stderr
    assert said_v2 == (version == "2")
    if version == "0":
        assert b"multi_ack_detailed" in cloned.stderr
    await assert_clone_matches(repo, clone)

    add_commit(repo, "main", oids["submodule"], 1)
    add_commit(repo, "topic", oids["root"], 2)
    await git("-c", f"protocol.version={version}", "-C", clone, "fetch", "origin")
    await assert_clone_matches(repo, clone)


@pytest.mark.parametrize("version", PROTOCOLS)
async def test_shallow_clone_and_deepen(gateway: Gateway, short_dir: str, version: str) -> None:
    repo = gateway.repo("shallow.git")
    rich_repository(repo)
    clone = os.path.join(short_dir, "clone")
    proto = ("-c", f"protocol.version={version}")
    await git(
        *proto, "clone", "--depth", "1", "--no-single-branch", gateway.url("shallow.git"), clone
    )
    count = await git("-C", clone, "rev-list", "--count", "HEAD")
    assert count.stdout.strip() == b"1"
    assert os.path.exists(os.path.join(clone, ".git", "shallow"))
    await git(*proto, "-C", clone, "fetch", "--deepen", "1")
    count = await git("-C", clone, "rev-list", "--count", "HEAD")
    assert count.stdout.strip() == b"2"
    await assert_clone_matches(repo, clone)


async def test_partial_clone_fetches_blobs_on_demand(gateway: Gateway, short_dir: str) -> None:
    repo = gateway.repo("partial.git")
    rich_repository(repo)
    clone = os.path.join(short_dir, "clone")
    await git("clone", "--no-checkout", "--filter=blob:none", gateway.url("partial.git"), clone)
    missing = await git("-C", clone, "rev-list", "--objects", "--all", "--missing=print")
    missing_blobs = [line for line in missing.stdout.splitlines() if line.startswith(b"?")]
    assert missing_blobs, "the blobs were not filtered out"
    # Checking out fetches the blobs of main (a lazy fetch, another POST).
    await git("-C", clone, "checkout", "main")
    with open(os.path.join(clone, "large.bin"), "rb") as f:
        assert f.read() == bytes(range(256)) * (5 * 4096)
    await assert_clone_matches(repo, clone)


@pytest.mark.parametrize("version", PROTOCOLS)
async def test_empty_repository(gateway: Gateway, short_dir: str, version: str) -> None:
    repo = gateway.repo("empty.git")
    await git("init", "--bare", "--quiet", repo)
    clone = os.path.join(short_dir, "clone")
    cloned = await git(
        "-c", f"protocol.version={version}", "clone", gateway.url("empty.git"), clone
    )
    assert b"cloned an empty repository" in cloned.stderr
    assert await refs(clone) == {}
    await fsck(clone)


@pytest.mark.parametrize("version", PROTOCOLS)
async def test_gzip_request_from_git(gateway: Gateway, short_dir: str, version: str) -> None:
    # 60 branches: the want lines make a request body git compresses (over 1 KiB).
    repo = gateway.repo("many.git")
    build = FastImport()
    for n in range(60):
        build.commit(f"refs/heads/b{n}", b"c%d\n" % n, {b"f.txt": b"%d\n" % n}, parents=[])
    build.run(repo)
    clone = os.path.join(short_dir, "clone")
    cloned = await git(
        "-c", f"protocol.version={version}", "clone", "--no-checkout", gateway.url("many.git"),
        clone, env={"GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"},
    )  # fmt: skip
    assert b"Send header: Content-Encoding: gzip" in cloned.stderr
    await assert_clone_matches(repo, clone)


def upload_pack_request(*wants: str) -> bytes:
    """A protocol v0 upload-pack request: wants, flush, done (no capabilities)."""
    lines = [b"%04x" % (len(line) + 4) + line for line in (f"want {w}\n".encode() for w in wants)]
    return b"".join(lines) + b"0000" + b"0009done\n"


async def test_gzip_request_by_hand(gateway: Gateway, short_dir: str) -> None:
    repo = gateway.repo("hand.git")
    oids = rich_repository(repo)
    url = gateway.url("hand.git/git-upload-pack")
    headers = {"Content-Type": "application/x-git-upload-pack-request"}
    body = upload_pack_request(oids["merge"])

    status, got, pack_plain = await request(url, body, headers)
    assert status == 200
    assert got["content-type"] == "application/x-git-upload-pack-result"
    assert got["cache-control"] == "no-cache, max-age=0, must-revalidate"
    assert got["pragma"] == "no-cache"
    assert pack_plain.startswith(b"0008NAK\nPACK")

    compressed = gzip.compress(body)
    status, _, pack_gzip = await request(url, compressed, {**headers, "Content-Encoding": "gzip"})
    assert (status, pack_gzip) == (200, pack_plain)
    # The pack is whole: index-pack takes it and the commit is there with its history.
    target = os.path.join(short_dir, "target.git")
    await git("init", "--bare", "--quiet", target)
    indexed = await trio.run_process(
        ["git", "-C", target, "index-pack", "--stdin"],
        stdin=pack_gzip[len(b"0008NAK\n") :],
        capture_stdout=True,
    )
    assert indexed.returncode == 0
    await git("-C", target, "update-ref", "refs/heads/main", oids["merge"])
    await fsck(target)

    status, _, text = await request(url, b"not gzip", {**headers, "Content-Encoding": "gzip"})
    assert status == 400 and text.startswith(b"malformed gzip request body")
    status, _, text = await request(url, compressed[:-10], {**headers, "Content-Encoding": "gzip"})
    assert (status, text) == (400, b"truncated gzip request body\n")


async def test_http_errors(gateway: Gateway) -> None:
    repo = gateway.repo("there.git")
    rich_repository(repo)
    os.makedirs(gateway.repo("not-a-repo.git"))
    base = f"http://{gateway.address}"
    info = "info/refs?service=git-upload-pack"

    async def status_text(path: str, **kwargs: object) -> tuple[int, bytes]:
        status, _, body = await request(base + path, **kwargs)  # type: ignore[arg-type]
        return status, body

    assert await status_text(f"/default/missing.git/{info}") == (404, b"repository not found\n")
    assert await status_text(f"/nope/there.git/{info}") == (404, b"storage not found\n")
    assert (await status_text(f"/default/not-a-repo.git/{info}"))[0] == 404
    escaping = await status_text(f"/default/%2e%2e/%2e%2e/etc/{info}")
    assert escaping == (400, b"relative path escapes root directory\n")
    assert (await status_text("/default/there.git/HEAD"))[0] == 404
    assert (await status_text("/there.git/info/refs?service=git-upload-pack"))[0] == 404
    assert await status_text("/default/there.git/info/refs") == (403, b"unsupported service\n")
    assert (await status_text("/default/there.git/info/refs?service=git-upload-archive"))[0] == 403
    status, headers, _ = await request(base + "/default/there.git/git-upload-pack")
    assert (status, headers["allow"]) == (405, "POST")
    status, _, text = await request(
        base + "/default/there.git/git-upload-pack", b"0000", {"Content-Type": "text/plain"}
    )
    assert status == 415
    assert text == (
        b"Expected POST with Content-Type 'application/x-git-upload-pack-request', "
        b"but received 'text/plain' instead.\n"
    )
    upload_pack_type = {"Content-Type": "application/x-git-upload-pack-request"}
    status, _, text = await request(
        base + "/default/there.git/git-upload-pack",
        b"0000",
        {**upload_pack_type, "Content-Encoding": "br"},
    )
    assert (status, text) == (415, b"unsupported content encoding\n")

    status, headers, body = await request(f"{base}/default/there.git/{info}")
    assert status == 200
    assert headers["content-type"] == "application/x-git-upload-pack-advertisement"
    assert headers["expires"] == "Fri, 01 Jan 1980 00:00:00 GMT"
    assert body.startswith(b"001e# service=git-upload-pack\n0000")

    # What the git client makes of it.
    failed = await git("clone", gateway.url("missing.git"), "/nonexistent/x", check=False)
    assert failed.returncode != 0
    assert b"not found" in failed.stderr

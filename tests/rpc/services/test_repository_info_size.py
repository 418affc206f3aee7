"""RepositoryService RepositorySize and RepositoryInfo against the filesystem and git.

Sizes are checked against `find -printf %s` (apparent sizes of every non-directory) and
the counters against what git itself made (repack, cruft packs, .keep files, pack-refs),
plus upstream's cases (repository_info_test.go) byte for byte.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from tests.helpers import Client
from tests.helpers import new_path as new_path
from tests.helpers import repository as repo
from tests.repos import FastImport, git, rich_repository
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import repository_pb2 as pb
from trio_gitaly.storage.usage import directory_size

SERVICE = "/gitaly.RepositoryService/"
FORMATS = ["sha1", "sha256"]
FILES = pb.RepositoryInfoResponse.ReferencesInfo.REFERENCE_BACKEND_FILES
REFTABLE = pb.RepositoryInfoResponse.ReferencesInfo.REFERENCE_BACKEND_REFTABLE
STALE_S = 10 * 24 * 3600


def init(path: str, object_format: str = "sha1") -> None:
    subprocess.run(
        ["git", "init", "--bare", "--quiet", f"--object-format={object_format}", path],
        check=True,
    )


def find_size(path: str, *predicates: str) -> int:
    """Sum of apparent sizes by find(1) (every non-directory unless told otherwise)."""
    out = subprocess.run(
        ["find", path, *(predicates or ("!", "-type", "d")), "-printf", "%s\n"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sum(int(line) for line in out.split())


def count_files(path: str) -> int:
    """Non-directory entries under `path`, by find(1)."""
    out = subprocess.run(
        ["find", path, "!", "-type", "d"], check=True, capture_output=True, text=True
    ).stdout
    return len(out.splitlines())


def write(path: str, size: int, mtime: float | None = None) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(b"\0" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


async def repository_size(client: Client, name: str) -> int:
    request = pb.RepositorySizeRequest(repository=repo(name))
    response = await client.unary(SERVICE + "RepositorySize", request, pb.RepositorySizeResponse)
    return int(response.size)


async def repository_info(client: Client, name: str) -> pb.RepositoryInfoResponse:
    request = pb.RepositoryInfoRequest(repository=repo(name))
    response: pb.RepositoryInfoResponse = await client.unary(
        SERVICE + "RepositoryInfo", request, pb.RepositoryInfoResponse
    )
    return response


def info(
    repo_size: int, *, loose_refs: int = 0, packed: int = 0, backend: int = FILES, **objects: int
) -> pb.RepositoryInfoResponse:
    return pb.RepositoryInfoResponse(
        size=repo_size,
        references=pb.RepositoryInfoResponse.ReferencesInfo(
            loose_count=loose_refs, packed_size=packed, reference_backend=backend
        ),
        objects=pb.RepositoryInfoResponse.ObjectsInfo(**objects),
    )


# -- RepositorySize --------------------------------------------------------------------


@pytest.mark.parametrize("object_format", FORMATS)
async def test_repository_size_matches_find(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    assert await repository_size(client, "rich.git") == find_size(path) // 1024
    # Unpacked, the same objects take more room; garbage and symlinks count too.
    git(path, "repack", "-ad")
    os.symlink("/nonexistent/target/of/some/length", os.path.join(path, "dangling"))
    write(os.path.join(path, "garbage"), 5 * 1024)
    assert await repository_size(client, "rich.git") == find_size(path) // 1024


async def test_repository_size_upstream_cases(client: Client, config: Config) -> None:
    path = new_path(config, "r.git")
    init(path)
    # An empty repository is a few files that stay under 1 KiB... or not quite: match find.
    assert await repository_size(client, "r.git") == find_size(path) // 1024
    empty = find_size(path)
    blob = subprocess.run(
        ["git", "-C", path, "hash-object", "-w", "--stdin"],
        input=os.urandom(16 * 1024),
        check=True,
        capture_output=True,
    ).stdout.decode()
    loose = os.path.join(path, "objects", blob[:2], blob[2:].strip())
    assert await repository_size(client, "r.git") == (empty + os.path.getsize(loose)) // 1024
    assert await repository_size(client, "r.git") >= 16


async def test_repository_size_errors(client: Client, config: Config) -> None:
    for repository, code, message in [
        (None, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (repo("x.git", "fake"), grpc.StatusCode.INVALID_ARGUMENT, "storage name not found"),
        (repo("missing.git"), grpc.StatusCode.NOT_FOUND, "repository not found"),
    ]:
        request = pb.RepositorySizeRequest(repository=repository)
        error = await client.error(SERVICE + "RepositorySize", request, pb.RepositorySizeResponse)
        assert (error.code(), error.details()) == (code, message)


# -- RepositoryInfo: upstream's cases --------------------------------------------------


async def test_repository_info_upstream_cases(client: Client, config: Config) -> None:
    stale = time.time() - STALE_S - 60
    zero = "0" * 40
    cases: list[tuple[dict[str, tuple[int, float | None]], dict[str, int]]] = [
        ({}, {}),
        ({"refs/heads/main": (123, None)}, {"loose_refs": 1}),
        ({"packed-refs": (123, None)}, {"packed": 123}),
        ({f"objects/{zero[:2]}/{zero[2:]}": (123, None)}, {"size": 123, "recent_size": 123}),
        ({f"objects/{zero[:2]}/{zero[2:]}": (123, stale)}, {"size": 123, "stale_size": 123}),
        (
            {
                f"objects/{zero[:2]}/{zero[2:]}": (70, None),
                f"objects/11/{'1' * 38}": (700, stale),
            },
            {"size": 770, "recent_size": 70, "stale_size": 700},
        ),
        ({"objects/pack/pack-1234.pack": (123, None)}, {"size": 123, "recent_size": 123}),
        (
            {
                "objects/pack/pack-1234.pack": (123, None),
                "objects/pack/pack-1234.mtimes": (7, None),
            },
            {"size": 123, "stale_size": 123},
        ),
        (
            {"objects/pack/pack-1234.pack": (123, None), "objects/pack/pack-1234.keep": (7, None)},
            {"size": 123, "recent_size": 123, "keep_size": 123},
        ),
        (
            {
                "objects/pack/pack-1.pack": (70, None),
                "objects/pack/pack-2.pack": (700, None),
                "objects/pack/pack-2.keep": (100, None),
                "objects/pack/pack-3.pack": (7000, None),
                "objects/pack/pack-3.mtimes": (1000, None),
            },
            {"size": 7770, "recent_size": 770, "keep_size": 700, "stale_size": 7000},
        ),
        # A kept cruft pack is kept, not stale; garbage in shards and pack/ is not counted.
        (
            {
                "objects/pack/pack-4.pack": (50, None),
                "objects/pack/pack-4.keep": (1, None),
                "objects/pack/pack-4.mtimes": (1, None),
                "objects/pack/tmp_pack_x": (30, None),
                "objects/ab/not-hex": (40, None),
                "objects/pack/pack-4.rev": (9, None),
            },
            {"size": 50, "recent_size": 50, "keep_size": 50},
        ),
    ]
    for index, (files, objects) in enumerate(cases):
        name = f"case{index}.git"
        path = new_path(config, name)
        init(path)
        empty = find_size(path)
        loose_refs = objects.pop("loose_refs", 0)
        packed = objects.pop("packed", 0)
        for relative, (size, mtime) in files.items():
            write(os.path.join(path, relative), size, mtime)
        added = sum(size for size, _ in files.values())
        expected = info(empty + added, loose_refs=loose_refs, packed=packed, **objects)
        assert await repository_info(client, name) == expected, files


# -- RepositoryInfo: what git makes ----------------------------------------------------


def git_objects(path: str) -> dict[str, int]:
    """`git count-objects -v` as numbers."""
    lines = git(path, "count-objects", "-v").decode().splitlines()
    return {key: int(value) for key, value in (line.split(": ") for line in lines)}


@pytest.mark.parametrize("object_format", FORMATS)
async def test_repository_info_packed_repository(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "rich.git")
    rich_repository(path, object_format)
    git(path, "repack", "-adb")  # one pack, with a bitmap
    git(path, "multi-pack-index", "write", "--bitmap")
    git(path, "commit-graph", "write", "--reachable", "--split")
    git(path, "pack-refs", "--all")
    pack_files = os.listdir(os.path.join(path, "objects", "pack"))
    # Every file kind Gitaly reads on the way is there, and parses.
    assert "multi-pack-index" in pack_files
    assert any(n.startswith("multi-pack-index-") and n.endswith(".bitmap") for n in pack_files)
    assert any(n.startswith("pack-") and n.endswith(".bitmap") for n in pack_files)
    assert os.path.exists(os.path.join(path, "objects/info/commit-graphs/commit-graph-chain"))
    response = await repository_info(client, "rich.git")
    packs = find_size(os.path.join(path, "objects", "pack"), "-name", "pack-*.pack")
    assert git_objects(path)["count"] == 0 and git_objects(path)["packs"] == 1
    loose_refs = count_files(os.path.join(path, "refs"))
    assert response == info(
        find_size(path),
        loose_refs=loose_refs,
        packed=os.path.getsize(os.path.join(path, "packed-refs")),
        size=packs,
        recent_size=packs,
    )
    assert response.references.loose_count == 0


@pytest.mark.parametrize("object_format", FORMATS)
async def test_repository_info_loose_cruft_and_kept(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "r.git")
    build = FastImport(object_format=object_format)
    build.commit("refs/heads/main", b"one\n", {b"a": b"a\n"}, parents=[])
    build.commit("refs/heads/doomed", b"two\n", {b"b": b"b\n"}, parents=[])
    build.run(path)
    git(path, "repack", "-ad")
    git(path, "update-ref", "-d", "refs/heads/doomed")
    # Unreachable objects move into a cruft pack (with its .mtimes file).
    git(path, "repack", "--cruft", "-d")
    pack_dir = os.path.join(path, "objects", "pack")
    cruft = [n for n in os.listdir(pack_dir) if n.endswith(".mtimes")]
    assert len(cruft) == 1
    cruft_size = os.path.getsize(os.path.join(pack_dir, cruft[0].replace(".mtimes", ".pack")))
    # A kept pack of its own, and loose objects: one fresh, one stale.
    fresh = git(path, "hash-object", "-w", "--stdin", input=b"fresh\n").decode().strip()
    old = git(path, "hash-object", "-w", "--stdin", input=b"old\n").decode().strip()
    old_path = os.path.join(path, "objects", old[:2], old[2:])
    os.utime(old_path, (time.time() - STALE_S - 60,) * 2)
    kept_name = git(path, "pack-objects", "--quiet", os.path.join(pack_dir, "pack"), input=b"")
    kept = os.path.join(pack_dir, f"pack-{kept_name.decode().strip()}")
    write(kept + ".keep", 0)
    kept_size = os.path.getsize(kept + ".pack")

    counted = git_objects(path)
    assert counted["count"] == 2 and counted["packs"] == 3
    loose = find_size(os.path.join(path, "objects"), "-path", "*/objects/??/*", "-type", "f")
    stale = os.path.getsize(old_path)
    packs = find_size(pack_dir, "-name", "pack-*.pack")
    response = await repository_info(client, "r.git")
    assert fresh and response.objects == pb.RepositoryInfoResponse.ObjectsInfo(
        size=loose + packs,
        recent_size=(loose - stale) + (packs - cruft_size),
        stale_size=stale + cruft_size,
        keep_size=kept_size,
    )
    assert response.size == find_size(path)
    assert response.references.loose_count == count_files(os.path.join(path, "refs"))


async def test_repository_info_reftable_backend(client: Client, config: Config) -> None:
    path = new_path(config, "rt.git")
    init(path)
    with open(os.path.join(path, "config"), "a") as cfg:
        cfg.write("[extensions]\n\trefStorage = reftable\n")
    table = "0x000000000001-0x000000000002-0123abcd.ref"
    write(os.path.join(path, "reftable", table), 10)
    with open(os.path.join(path, "reftable", "tables.list"), "w") as tables:
        tables.write(table + "\n")
    write(os.path.join(path, "refs", "heads", "ignored"), 3)  # not looked at for reftable
    response = await repository_info(client, "rt.git")
    assert response == info(find_size(path), backend=REFTABLE)


async def test_repository_info_broken_files(client: Client, config: Config) -> None:
    """Files Gitaly parses on the way fail the RPC, with its messages."""
    prefix = "deriving repository info: "
    cases: list[tuple[str, bytes, str]] = [
        (
            "objects/pack/pack-1.bitmap",
            b"XXXXYYYY",
            'counting packfiles: reading bitmap info: invalid bitmap signature: "XXXX"',
        ),
        (
            "objects/pack/pack-1.bitmap",
            b"BITM\0\2\0\0",
            "counting packfiles: reading bitmap info: unsupported version: 2",
        ),
        (
            "objects/pack/pack-1.bitmap",
            b"BIT",
            "counting packfiles: reading bitmap info: reading bitmap header: unexpected EOF",
        ),
        (
            "objects/pack/multi-pack-index",
            b"",
            "counting packfiles: reading multi-pack-index: reading header: EOF",
        ),
        (
            "objects/pack/multi-pack-index",
            b"MIDX\1\1\1\2\0\0\0\0",
            "counting packfiles: reading multi-pack-index: unsupported number of base files: 2",
        ),
        (
            "objects/pack/multi-pack-index-abc.bitmap",
            b"\x01\x02\xff\n1234",
            "counting packfiles: reading multi-pack-index bitmap info: "
            'invalid bitmap signature: "\\x01\\x02\\xff\\n"',
        ),
        ("config", b"[core]\n\trefstorage = files # comment\n", ""),
        ("objects/info/commit-graph", b"CGPHx", ""),
        ("objects/info/commit-graph", b"CGPX\1\1\1\0", ""),
    ]
    for index, (relative, content, message) in enumerate(cases):
        name = f"broken{index}.git"
        path = new_path(config, name)
        init(path)
        target = os.path.join(path, relative)
        mode = "ab" if relative == "config" else "wb"
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, mode) as file:
            file.write(content)
        if relative == "config":
            message = (
                "checking references: reference backend: "
                'unknown reference backend: "files # comment"'
            )
        elif content == b"CGPHx":
            message = (
                f'checking commit-graph info: commit graph file "{target}" is too small, no header'
            )
        elif relative.endswith("commit-graph"):
            message = (
                f'checking commit-graph info: commit graph file "{target}" doesn\'t have signature'
            )
        request = pb.RepositoryInfoRequest(repository=repo(name))
        error = await client.error(SERVICE + "RepositoryInfo", request, pb.RepositoryInfoResponse)
        assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, prefix + message)


async def test_repository_info_errors(client: Client, config: Config) -> None:
    for repository, code, message in [
        (None, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (repo("x.git", "fake"), grpc.StatusCode.INVALID_ARGUMENT, "storage name not found"),
        (repo("does/not/exist"), grpc.StatusCode.NOT_FOUND, "repository not found"),
    ]:
        request = pb.RepositoryInfoRequest(repository=repository)
        error = await client.error(SERVICE + "RepositoryInfo", request, pb.RepositoryInfoResponse)
        assert (error.code(), error.details()) == (code, message)


def test_directory_walk_checks_for_cancellation_per_directory(tmp_path: Path) -> None:
    """A cancelled RepositorySize stops its walk: the walk asks once per directory."""
    for index in range(20):
        (tmp_path / f"d{index}" / "sub").mkdir(parents=True)
        (tmp_path / f"d{index}" / "sub" / "f").write_bytes(b"x" * 10)
    calls = 0

    def checkpoint() -> None:
        nonlocal calls
        calls += 1

    assert directory_size(str(tmp_path), checkpoint=checkpoint) == 200
    assert calls == 1 + 20 + 20  # the root, each d<i>, each sub

    class Stop(Exception):
        pass

    seen = 0

    def stop_after_five() -> None:
        nonlocal seen
        seen += 1
        if seen > 5:
            raise Stop

    with pytest.raises(Stop):
        directory_size(str(tmp_path), checkpoint=stop_after_five)
    assert seen == 6

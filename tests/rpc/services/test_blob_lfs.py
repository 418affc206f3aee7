"""Git LFS pointers: Gitaly's recognition rule, and the three BlobService LFS RPCs on a
repository of real pointer files (valid, malformed, at and over the size limit)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from tests.helpers import Client, storage_path
from tests.helpers import repository as repo
from tests.repos import GIT_ENV, FastImport, git
from trio_gitaly.config import Config
from trio_gitaly.git.lfs import LFS_POINTER_MAX_BYTES, LFSPointerInfo, parse_lfs_pointer
from trio_gitaly.rpc.gen.gitaly import blob_pb2 as pb

SERVICE = "/gitaly.BlobService/"
FORMATS = ["sha1", "sha256"]
HEX = "0123456789abcdef" * 4  # 64 hex digits


def pointer_text(file_oid: str, size: int, *, version: str = "v1", extra: bytes = b"") -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/{version}\noid sha256:{file_oid}\nsize {size}\n"
    ).encode() + extra


# -- recognition -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (pointer_text(HEX, 12345), LFSPointerInfo(HEX.encode(), 12345)),
        (pointer_text(HEX, 12345) + b"\n", LFSPointerInfo(HEX.encode(), 12345)),
        # No final newline: `$` matches at the end, too.
        (pointer_text(HEX, 7)[:-1], LFSPointerInfo(HEX.encode(), 7)),
        # Gitaly only checks the version's prefix.
        (pointer_text(HEX, 1, version="v2"), LFSPointerInfo(HEX.encode(), 1)),
        # Keys in any order, other keys anywhere (spec extensions).
        (
            b"version https://git-lfs.github.com/spec/v1\nsize 5\next-0-x sha256:ab\noid sha256:"
            + HEX.encode(),
            LFSPointerInfo(HEX.encode(), 5),
        ),
        (pointer_text(HEX, 0), LFSPointerInfo(HEX.encode(), 0)),
        (pointer_text(HEX, 7).replace(b"size 7", b"size 007"), LFSPointerInfo(HEX.encode(), 7)),
        (pointer_text(HEX, 2**63 - 1), LFSPointerInfo(HEX.encode(), 2**63 - 1)),
        # The first oid and size lines win.
        (
            pointer_text(HEX, 1) + b"size 2\noid sha256:" + b"f" * 64 + b"\n",
            LFSPointerInfo(HEX.encode(), 1),
        ),
        # Not pointers.
        (pointer_text(HEX, 2**63), None),
        (pointer_text(HEX, 1).replace(b"git-lfs.github.com", b"hawser.github.com"), None),
        (b" " + pointer_text(HEX, 1), None),
        (b"\n" + pointer_text(HEX, 1), None),
        (pointer_text(HEX.upper(), 1), None),
        (pointer_text(HEX[:-1], 1), None),
        (pointer_text(HEX + "0", 1), None),
        (pointer_text(HEX, 1).replace(b"sha256:", b"sha1:"), None),
        (pointer_text(HEX, 1).replace(b"\n", b"\r\n"), None),
        (pointer_text(HEX, 1).replace(b"size 1", b"size -1"), None),
        (pointer_text(HEX, 1).replace(b"size 1", b"size  1"), None),
        (pointer_text(HEX, 1).replace(b"size 1", b"size 1 "), None),
        (pointer_text(HEX, 1).replace(b"size 1\n", b""), None),
        (pointer_text(HEX, 1).replace(b"oid sha256:", b" oid sha256:"), None),
        (b"", None),
        (b"version https://git-lfs.github.com/spec/v1\n", None),
    ],
)
def test_parse_lfs_pointer(data: bytes, expected: LFSPointerInfo | None) -> None:
    assert parse_lfs_pointer(data) == expected


# -- a repository of pointers ----------------------------------------------------------

UPSTREAM_POINTERS = [
    ("91eff75a492a3ed0dfcb544d7f31326bc4014c8551849c192fd1e48d4dd2c897", 1575078),
    ("f2b0a1e7550e9b718dafc9b525a04879a766de62e4fbdfc46593d47f7ab74636", 20),
    ("bad71f905b60729f502ca339f7c9f001281a3d12c68a5da7f15de8009f4bd63d", 18),
    ("47997ea7ecff33be61e3ca1cc287ee72a2125161518f1a169f2893a5a82e9d95", 7501),
    ("8c1e8de917525f83104736f6c64d32f0e2a02f5bf2ee57843a54f222cba8c813", 2797),
    ("96f74c6fe7a2979eefb9ec74a5dfc6888fb25543cf99b77586b79afea1da6f97", 1219696),
]


def padded_pointer(total: int) -> bytes:
    """A valid pointer of exactly `total` bytes (an extension key pads it)."""
    base = pointer_text(HEX, 42)
    pad = total - len(base) - len(b"ext-0-pad \n")
    assert pad > 0
    return base + b"ext-0-pad " + b"x" * pad + b"\n"


@dataclass
class LFSRepo:
    path: str
    name: str
    pointers: list[pb.LFSPointer]  # the six upstream ones, in order
    by_content: dict[bytes, str]  # every blob written: content -> oid
    valid: set[str]  # oids of every valid pointer of any size
    at_limit: str  # a valid pointer of exactly LFS_POINTER_MAX_BYTES
    over_limit: str  # a valid pointer one byte over
    commit: str  # master's commit
    tree: str  # master's tree


MALFORMED = [
    b"just a file\n",
    pointer_text(HEX, 1).replace(b"git-lfs.github.com", b"hawser.github.com"),
    pointer_text(HEX.upper(), 1),
    pointer_text(HEX, 1).replace(b"\n", b"\r\n"),
    pointer_text(HEX, 1).replace(b"size 1\n", b""),
    pointer_text(HEX, 2**63),
]


def lfs_repository(config: Config, name: str, object_format: str = "sha1") -> LFSRepo:
    """Gitaly's LFS test repository plus malformed and limit-sized pointers."""
    path = os.path.join(storage_path(config), name)
    contents = [pointer_text(oid, size, extra=b"\n") for oid, size in UPSTREAM_POINTERS]
    v2 = pointer_text(HEX, 99, version="v2")
    at_limit, over_limit = (
        padded_pointer(LFS_POINTER_MAX_BYTES),
        padded_pointer(LFS_POINTER_MAX_BYTES + 1),
    )
    assert len(at_limit) == 200 and len(over_limit) == 201
    build = FastImport(object_format=object_format)
    build.commit(
        "refs/heads/master",
        b"master\n",
        {b"p0": contents[0], b"v2": v2, **{f"bad{i}".encode(): c for i, c in enumerate(MALFORMED)}},
        parents=[],
    )
    build.commit("refs/heads/foo", b"foo\n", {b"p1": contents[1], b"p2": contents[2]}, parents=[])
    build.commit(
        "refs/heads/bar",
        b"bar\n",
        {
            b"p3": contents[3],
            b"p4": contents[4],
            b"p5": contents[5],
            b"at": at_limit,
            b"over": over_limit,
        },
        parents=[],
    )
    build.run(path)
    by_content = {}
    for content in [*contents, v2, at_limit, over_limit, *MALFORMED]:
        by_content[content] = git(path, "hash-object", "--stdin", input=content).decode().strip()
    pointers = [
        lfs_pointer(by_content[c], c, file_oid, size)
        for c, (file_oid, size) in zip(contents, UPSTREAM_POINTERS, strict=True)
    ]

    def rev(spec: str) -> str:
        return git(path, "rev-parse", spec).decode().strip()

    return LFSRepo(
        path=path,
        name=name,
        pointers=pointers,
        by_content=by_content,
        valid={p.oid for p in pointers}
        | {by_content[v2], by_content[at_limit], by_content[over_limit]},
        at_limit=by_content[at_limit],
        over_limit=by_content[over_limit],
        commit=rev("master"),
        tree=rev("master^{tree}"),
    )


def lfs_pointer(oid: str, data: bytes, file_oid: str, file_size: int) -> pb.LFSPointer:
    return pb.LFSPointer(
        oid=oid, data=data, size=len(data), file_oid=file_oid.encode(), file_size=file_size
    )


def expected_pointer(repository: LFSRepo, oid: str) -> pb.LFSPointer:
    data = git(repository.path, "cat-file", "blob", oid)
    info = parse_lfs_pointer(data)
    assert info is not None
    return pb.LFSPointer(
        oid=oid, data=data, size=len(data), file_oid=info.file_oid, file_size=info.file_size
    )


def walk_reference(repository: LFSRepo, revisions: Sequence[str]) -> list[str]:
    """The pointers a graph walk finds, in git's order: rev-list with Gitaly's flags."""
    out = git(
        repository.path,
        "rev-list",
        "--in-commit-order",
        "--objects",
        "--object-names",
        f"--filter=blob:limit={LFS_POINTER_MAX_BYTES}",
        "--filter=object:type=blob",
        "--filter-provided-objects",
        *revisions,
    )
    oids = [line.split(b" ")[0].decode() for line in out.splitlines()]
    return [oid for oid in oids if oid in repository.valid]


async def pointers_of(
    client: Client, method: str, request: Any, response_type: Any
) -> list[pb.LFSPointer]:
    responses = await client.stream(SERVICE + method, request, response_type)
    assert all(r.lfs_pointers for r in responses)
    return [p for r in responses for p in r.lfs_pointers]


# -- ListLFSPointers -------------------------------------------------------------------


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_lfs_pointers(client: Client, config: Config, object_format: str) -> None:
    lfs = lfs_repository(config, "lfs.git", object_format)
    p = lfs.pointers

    async def listed(revisions: list[str], limit: int = 0) -> list[pb.LFSPointer]:
        request = pb.ListLFSPointersRequest(
            repository=repo("lfs.git"), revisions=revisions, limit=limit
        )
        return await pointers_of(client, "ListLFSPointers", request, pb.ListLFSPointersResponse)

    # Upstream's cases.
    v2 = lfs.by_content[pointer_text(HEX, 99, version="v2")]
    ids = [p[0].oid, p[1].oid, p[2].oid, lfs.tree, lfs.commit]
    # The tree and commit are walked (master's tree holds p0 and the v2 pointer).
    assert {x.oid for x in await listed(ids)} == {p[0].oid, p[1].oid, p[2].oid, v2}
    assert await listed(ids[:3]) == [p[0], p[1], p[2]]
    master = await listed(["refs/heads/master"])
    assert {x.oid for x in master} == {p[0].oid, v2}
    assert await listed(["refs/heads/master", "--not", "--all"]) == []
    partial = await listed(["--all", "--not", "refs/heads/master"])
    assert {x.oid for x in partial} == {x.oid for x in p[1:]}
    # Order and limits follow rev-list's walk.
    for revisions in (["--all"], ["--all", "--not", "refs/heads/master"], ["refs/heads/bar"], ids):
        order = walk_reference(lfs, revisions)
        assert [x.oid for x in await listed(revisions)] == order
        for limit in (1, 3, 5, len(order), len(order) + 1, -1):
            expected = order if limit < 0 else order[:limit]
            assert [x.oid for x in await listed(revisions, limit)] == expected
    everything = await listed(["--all"])
    assert everything == [expected_pointer(lfs, oid) for oid in walk_reference(lfs, ["--all"])]
    # git's blob:limit filter keeps blobs *smaller* than the limit: the 200-byte pointer
    # is not walked (the other two listings keep it).
    assert lfs.at_limit not in {x.oid for x in everything}
    assert lfs.over_limit not in {x.oid for x in everything}


async def test_list_lfs_pointers_errors(client: Client, config: Config) -> None:
    path = os.path.join(storage_path(config), "lfs.git")
    lfs_repository(config, "lfs.git")
    cases: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
        ({"revisions": ["master"]}, grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (
            {"repository": repo("nope.git"), "revisions": ["master"]},
            grpc.StatusCode.NOT_FOUND,
            "repository not found",
        ),
        ({"repository": repo("lfs.git")}, grpc.StatusCode.INVALID_ARGUMENT, "missing revisions"),
        (
            {"repository": repo("lfs.git"), "revisions": ["-dashed"]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid revision: revision can't start with '-'",
        ),
    ]
    for fields, code, message in cases:
        error = await client.stream_error(
            SERVICE + "ListLFSPointers",
            pb.ListLFSPointersRequest(**fields),
            pb.ListLFSPointersResponse,
        )
        assert (error.code(), error.details()) == (code, message)
    # A revision git does not know: git's own complaint, INTERNAL.
    error = await client.stream_error(
        SERVICE + "ListLFSPointers",
        pb.ListLFSPointersRequest(repository=repo("lfs.git"), revisions=["nope"]),
        pb.ListLFSPointersResponse,
    )
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details().startswith(
        'rev-list pipeline command: exit status 128, stderr: "fatal: '
    )
    assert os.path.isdir(path)


# -- ListAllLFSPointers ----------------------------------------------------------------


@pytest.mark.parametrize("object_format", FORMATS)
async def test_list_all_lfs_pointers(client: Client, config: Config, object_format: str) -> None:
    lfs = lfs_repository(config, "lfs.git", object_format)
    # A pointer nothing refers to is found too.
    dangling_data = pointer_text("1" * 64, 12345)
    dangling = git(lfs.path, "hash-object", "-w", "--stdin", input=dangling_data).decode().strip()

    async def listed(limit: int = 0, **fields: Any) -> list[pb.LFSPointer]:
        request = pb.ListAllLFSPointersRequest(repository=repo("lfs.git", **fields), limit=limit)
        return await pointers_of(
            client, "ListAllLFSPointers", request, pb.ListAllLFSPointersResponse
        )

    everything = await listed()
    # Every valid pointer of at most 200 bytes (the 201-byte one is never read).
    expected = (lfs.valid - {lfs.over_limit}) | {dangling}
    assert {p.oid for p in everything} == expected and len(everything) == len(expected)
    assert sorted(everything, key=lambda p: p.oid) == [
        expected_pointer(lfs, oid) for oid in sorted(expected)
    ]
    assert lfs_pointer(dangling, dangling_data, "1" * 64, 12345) in everything
    for limit in (1, 3, len(expected), -1):
        got = await listed(limit)
        assert len(got) == (len(expected) if limit < 0 else min(limit, len(expected)))
        assert {p.oid for p in got} <= expected


async def test_list_all_lfs_pointers_in_quarantine(client: Client, config: Config) -> None:
    lfs = lfs_repository(config, "lfs.git")
    os.makedirs(os.path.join(lfs.path, "objects/incoming-empty/pack"))
    empty = pb.ListAllLFSPointersRequest(
        repository=repo("lfs.git", git_object_directory="objects/incoming-empty")
    )
    assert (
        await pointers_of(client, "ListAllLFSPointers", empty, pb.ListAllLFSPointersResponse) == []
    )
    # A push's new objects, held in quarantine: only those are listed.
    relative = "objects/incoming-push"
    directory = os.path.join(lfs.path, relative)
    os.makedirs(os.path.join(directory, "pack"))
    data = pointer_text("1" * 64, 12345)
    oid = (
        subprocess.run(
            ["git", "-C", lfs.path, "hash-object", "-w", "--stdin"],
            input=data,
            env={**GIT_ENV, "GIT_OBJECT_DIRECTORY": directory},
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    pushed = pb.ListAllLFSPointersRequest(repository=repo("lfs.git", git_object_directory=relative))
    assert await pointers_of(
        client, "ListAllLFSPointers", pushed, pb.ListAllLFSPointersResponse
    ) == [lfs_pointer(oid, data, "1" * 64, 12345)]
    with_alternates = pb.ListAllLFSPointersRequest(
        repository=repo(
            "lfs.git", git_object_directory=relative, git_alternate_object_directories=["objects"]
        )
    )
    got = await pointers_of(
        client, "ListAllLFSPointers", with_alternates, pb.ListAllLFSPointersResponse
    )
    assert {p.oid for p in got} == (lfs.valid - {lfs.over_limit}) | {oid}


async def test_list_all_lfs_pointers_errors(client: Client, config: Config) -> None:
    for request, code, message in [
        (pb.ListAllLFSPointersRequest(), grpc.StatusCode.INVALID_ARGUMENT, "repository not set"),
        (
            pb.ListAllLFSPointersRequest(repository=repo("nope.git")),
            grpc.StatusCode.NOT_FOUND,
            "repository not found",
        ),
    ]:
        error = await client.stream_error(
            SERVICE + "ListAllLFSPointers", request, pb.ListAllLFSPointersResponse
        )
        assert (error.code(), error.details()) == (code, message)


# -- GetLFSPointers --------------------------------------------------------------------


@pytest.mark.parametrize("object_format", FORMATS)
async def test_get_lfs_pointers(client: Client, config: Config, object_format: str) -> None:
    lfs = lfs_repository(config, "lfs.git", object_format)
    p = lfs.pointers

    async def get(ids: list[str]) -> list[pb.LFSPointer]:
        request = pb.GetLFSPointersRequest(repository=repo("lfs.git"), blob_ids=ids)
        return await pointers_of(client, "GetLFSPointers", request, pb.GetLFSPointersResponse)

    assert await get([p[0].oid, p[1].oid, p[2].oid]) == [p[0], p[1], p[2]]
    # Other objects and blobs that are not pointers are skipped; the order is the request's.
    malformed = [lfs.by_content[c] for c in MALFORMED]
    mixed = [
        p[2].oid,
        lfs.tree,
        *malformed,
        p[0].oid,
        lfs.commit,
        lfs.over_limit,
        lfs.at_limit,
        p[2].oid,
    ]
    assert await get(mixed) == [p[2], p[0], expected_pointer(lfs, lfs.at_limit), p[2]]
    # Revisions are accepted as ids, as git reads them.
    assert await get(["master:p0"]) == [p[0]]


async def test_get_lfs_pointers_errors(client: Client, config: Config) -> None:
    lfs = lfs_repository(config, "lfs.git")
    cases = [
        (
            pb.GetLFSPointersRequest(blob_ids=["f00"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "repository not set",
        ),
        (
            pb.GetLFSPointersRequest(repository=repo("lfs.git")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "empty BlobIds",
        ),
        (
            pb.GetLFSPointersRequest(repository=repo("nope.git"), blob_ids=["f00"]),
            grpc.StatusCode.NOT_FOUND,
            "repository not found",
        ),
        (
            pb.GetLFSPointersRequest(
                repository=repo("lfs.git"), blob_ids=[lfs.pointers[0].oid, "f00"]
            ),
            grpc.StatusCode.INTERNAL,
            'retrieving object info for "f00": object not found',
        ),
    ]
    for request, code, message in cases:
        error = await client.stream_error(
            SERVICE + "GetLFSPointers", request, pb.GetLFSPointersResponse
        )
        assert (error.code(), error.details()) == (code, message)

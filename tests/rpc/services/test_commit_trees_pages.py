"""CommitService.GetTreeEntries pagination: pages, cursors and Gitaly's page tokens."""

from __future__ import annotations

import base64
import json

import grpc
import pytest

from tests.helpers import Client
from tests.repos import FastImport, git, rich_repository
from tests.rpc.services.test_commit_trees_entry import new_path
from tests.rpc.services.test_commit_trees_list import (
    RANK,
    SERVICE,
    expected_entries,
    get_entries,
    nested_repository,
    request,
)
from trio_gitaly.config import Config
from trio_gitaly.rpc.gen.gitaly import commit_pb2 as pb
from trio_gitaly.rpc.gen.gitaly import shared_pb2

FORMATS = ["sha1", "sha256"]


async def test_get_tree_entries_paginated_flat_listing(client: Client, config: Config) -> None:
    """Gitaly's "pagination - read a tree with subdirectories": trees first, flat paths."""
    path = new_path(config, "n.git")
    nested_repository(path)
    full = sorted(
        expected_entries(path, "main", b"", recursive=False, flat=True), key=lambda e: RANK[e.type]
    )
    assert len(full) == 7

    def paged(limit: int, token: str = "") -> pb.GetTreeEntriesRequest:
        return request(
            "n.git",
            b"main",
            b".",
            sort=pb.GetTreeEntriesRequest.TREES_FIRST,
            pagination_params=shared_pb2.PaginationParameter(limit=limit, page_token=token),
        )

    first, cursor = await get_entries(client, paged(1))
    assert first == full[:1] and cursor is not None and cursor.next_cursor
    second, cursor = await get_entries(client, paged(3, cursor.next_cursor))
    assert second == full[1:4] and cursor is not None
    rest, cursor = await get_entries(client, paged(10, cursor.next_cursor))
    assert rest == full[4:] and cursor == shared_pb2.PaginationCursor(next_cursor="")


async def test_get_tree_entries_token_after_the_tree_changed(
    client: Client, config: Config
) -> None:
    """Gitaly's "pagination continues on same tree after concurrent commit", with its
    treeoid_pagination flag off (the default): the token's path is gone, INTERNAL."""
    path = new_path(config, "moving.git")
    build = FastImport()
    build.commit(
        "refs/heads/main", b"one\n", {b"dir1/file2": b"2", b"dir2/file3": b"3"}, parents=[]
    )
    build.run(path)
    first, cursor = await get_entries(
        client,
        request(
            "moving.git",
            b"main",
            b".",
            recursive=True,
            pagination_params=shared_pb2.PaginationParameter(limit=2),
        ),
    )
    assert [e.path for e in first] == [b"dir1", b"dir1/file2"]
    assert cursor is not None
    moved = FastImport()
    moved.commit("refs/heads/other", b"two\n", {b"new_dir/new_file2": b"n"}, parents=[])
    moved.run(path)
    git(path, "update-ref", "refs/heads/main", "refs/heads/other")
    error = await client.stream_error(
        SERVICE + "GetTreeEntries",
        request(
            "moving.git",
            b"main",
            b".",
            recursive=True,
            pagination_params=shared_pb2.PaginationParameter(
                limit=2, page_token=cursor.next_cursor
            ),
        ),
        pb.GetTreeEntriesResponse,
    )
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INTERNAL,
        "could not find starting OID: dir1/file2",
    )


def decode_cursor(cursor: str) -> dict[str, str]:
    value: dict[str, str] = json.loads(base64.b64decode(cursor))
    return value


@pytest.mark.parametrize("object_format", FORMATS)
async def test_get_tree_entries_pagination(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_path(config, "p.git")
    rich_repository(path, object_format)
    tree = git(path, "rev-parse", "main^{tree}").decode().strip()
    for sort in (pb.GetTreeEntriesRequest.DEFAULT, pb.GetTreeEntriesRequest.TREES_FIRST):
        full, _ = await get_entries(
            client, request("p.git", b"main", b".", recursive=True, sort=sort)
        )
        assert len(full) == 13
        for limit in (1, 2, 5, 12):
            collected: list[pb.TreeEntry] = []
            token = ""
            while True:
                params = shared_pb2.PaginationParameter(limit=limit, page_token=token)
                page, cursor = await get_entries(
                    client,
                    request(
                        "p.git", b"main", b".", recursive=True, sort=sort, pagination_params=params
                    ),
                )
                assert page == full[len(collected) : len(collected) + limit]
                collected += page
                assert cursor is not None
                token = cursor.next_cursor
                if not token:
                    break
                # Gitaly's token: the last entry's path and the listed tree.
                assert decode_cursor(token) == {
                    "file_name": page[-1].path.decode("utf-8", "replace"),
                    "tree_oid": tree,
                }
            assert collected == full
        # The last page gets no token, an exact fit included; -1 is everything, 0 nothing.
        for limit, count in ((13, 13), (100, 13), (-1, 13)):
            params = shared_pb2.PaginationParameter(limit=limit)
            page, cursor = await get_entries(
                client,
                request(
                    "p.git", b"main", b".", recursive=True, sort=sort, pagination_params=params
                ),
            )
            assert len(page) == count and cursor == shared_pb2.PaginationCursor(next_cursor="")
        responses = await client.stream(
            SERVICE + "GetTreeEntries",
            request(
                "p.git",
                b"main",
                b".",
                recursive=True,
                sort=sort,
                pagination_params=shared_pb2.PaginationParameter(limit=0),
            ),
            pb.GetTreeEntriesResponse,
        )
        assert responses == []
        # Old-style tokens name the last entry's object id.
        params = shared_pb2.PaginationParameter(limit=3, page_token=full[4].oid)
        page, _ = await get_entries(
            client,
            request("p.git", b"main", b".", recursive=True, sort=sort, pagination_params=params),
        )
        first_with_oid = next(i for i, e in enumerate(full) if e.oid == full[4].oid)
        assert page == full[first_with_oid + 1 : first_with_oid + 4]


async def test_get_tree_entries_page_token_details(client: Client, config: Config) -> None:
    path = new_path(config, "tok.git")
    build = FastImport()
    names = [b"caf\xe9", b"a<b>&c", b"line\nbreak", b"tab\there", b'q"uote', b"\xe2\x9c\x93"]
    build.commit("refs/heads/main", b"names\n", {name: name for name in names}, parents=[])
    build.run(path)
    full, _ = await get_entries(client, request("tok.git", b"main", b"."))
    tree = git(path, "rev-parse", "main^{tree}").decode().strip()
    token = ""
    for entry in full[:-1]:
        page, cursor = await get_entries(
            client,
            request(
                "tok.git",
                b"main",
                b".",
                pagination_params=shared_pb2.PaginationParameter(limit=1, page_token=token),
            ),
        )
        assert page == [entry]
        assert cursor is not None
        token = cursor.next_cursor
        raw = base64.b64decode(token)
        # Go's encoding/json: compact, HTML characters escaped, U+FFFD per invalid byte.
        assert b"<" not in raw and b">" not in raw and b"&" not in raw
        assert json.loads(raw) == {
            "file_name": entry.path.decode("utf-8", "replace"),
            "tree_oid": tree,
        }
        assert raw.startswith(b'{"file_name":"') and b'","tree_oid":"' in raw
    # A JSON token with another spelling of the field, or null, is still a path token.
    odd = base64.b64encode(json.dumps({"FILE_NAME": "a<b>&c"}).encode()).decode()
    page, _ = await get_entries(
        client,
        request(
            "tok.git",
            b"main",
            b".",
            pagination_params=shared_pb2.PaginationParameter(limit=1, page_token=odd),
        ),
    )
    after = next(i for i, e in enumerate(full) if e.path == b"a<b>&c") + 1
    assert page == full[after : after + 1]
    null = base64.b64encode(b"null").decode()
    page, _ = await get_entries(
        client,
        request(
            "tok.git",
            b"main",
            b".",
            pagination_params=shared_pb2.PaginationParameter(limit=2, page_token=null),
        ),
    )
    assert page == full[:2]

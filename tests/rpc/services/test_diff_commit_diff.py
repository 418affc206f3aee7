"""DiffService.CommitDiff over a real server, compared with `git diff --raw -z` and `git diff`.

The reference (test_diff_common.reference) splits git's own patch output into files (one
`diff --git` section per raw entry, two for a type change) and takes each patch from its
first hunk or "Binary files" line. Limits: test_diff_commit_diff_limits.py.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers import Client
from tests.repos import SUBMODULE, git, rich_repository
from tests.rpc.services.test_diff_common import (
    FORMATS,
    MSG,
    File,
    Request,
    blob_id,
    commit_diff,
    new_repo,
    reference,
    repo,
    two_commits,
)
from trio_gitaly.config import Config

RICH_PAIRS = [
    ("root", "second"),
    ("second", "renamed"),
    ("renamed", "latin1"),
    ("latin1", "merge"),
    ("feature", "merge"),
    ("merge", "submodule"),
    ("root", "submodule"),
    ("submodule", "root"),
    ("second", "feature"),
]


@pytest.mark.parametrize("object_format", FORMATS)
async def test_rich_repository_matches_git(
    client: Client, config: Config, object_format: str
) -> None:
    path = new_repo(config, "rich.git")
    oids = rich_repository(path, object_format)
    for left, right in RICH_PAIRS:
        request = Request(
            repository=repo("rich.git"), left_commit_id=oids[left], right_commit_id=oids[right]
        )
        got = await commit_diff(client, request)
        assert got == reference(path, oids[left], oids[right]), (left, right)
    # Revisions, not only object ids, and the 5 MiB binary file.
    got = await commit_diff(
        client,
        Request(repository=repo("rich.git"), left_commit_id="main~5", right_commit_id="main"),
    )
    assert got == reference(path, "main~5", "main")
    assert any(f.binary and f.to_path == b"large.bin" for f in got)
    assert {b"caf\xe9.txt", "✓ check.txt".encode()} <= {f.to_path for f in got}


async def test_rename_and_paths(client: Client, config: Config) -> None:
    path = new_repo(config, "rich.git")
    oids = rich_repository(path)
    got = await commit_diff(
        client,
        Request(
            repository=repo("rich.git"),
            left_commit_id=oids["second"],
            right_commit_id=oids["renamed"],
        ),
    )
    assert [(f.from_path, f.to_path, f.patch) for f in got] == [
        (b"docs/guide.md", b"docs/manual.md", b"")
    ]
    paths = (b"README.md", b"caf\xe9.txt", b"vendor")
    got = await commit_diff(
        client,
        Request(
            repository=repo("rich.git"),
            left_commit_id=oids["root"],
            right_commit_id=oids["submodule"],
            paths=paths,
        ),
    )
    expected = reference(
        path, oids["root"], oids["submodule"], paths=tuple(map(os.fsdecode, paths))
    )
    assert got == expected
    assert [f.to_path for f in got] == [b"caf\xe9.txt", b"vendor/lib"]
    assert got[1].patch.startswith(b"@@ -0,0 +1 @@\n+Subproject commit ")


# -- upstream's cases ------------------------------------------------------------------


@pytest.mark.parametrize("object_format", FORMATS)
async def test_upstream_single_file_cases(
    client: Client, config: Config, object_format: str
) -> None:
    cases = {
        "change": ({b"foo": b"random string of text\n"}, {b"foo": b"random of string text\n"}),
        "deleted": ({b"foo": b"random string of text\n"}, {}),
        "pluses": ({}, {b"foo": b"+\n++\n+++\n++++\n+++++\n"}),
        "no newline": ({b"foo": b"random string of text"}, {b"foo": b"random of string text"}),
        "tabs newline": ({}, {b"foo\tbar\ngoo.txt": b"random string of text\n"}),
        "unicode": ({}, {"テスト.txt".encode(): "こんにちは世界\n".encode()}),
        "control": ({}, {b"bell\x07 vt\x0b \xff": b"x\n"}),
        "binary": ({b"foo": b"\x000 hello world"}, {b"foo": b"\x000 world hello"}),
        "same": ({b"foo": b"x\n"}, {b"foo": b"x\n"}),
    }
    expected_patches = {
        "change": b"@@ -1 +1 @@\n-random string of text\n+random of string text\n",
        "deleted": b"@@ -1 +0,0 @@\n-random string of text\n",
        "pluses": b"@@ -0,0 +1,5 @@\n++\n+++\n++++\n+++++\n++++++\n",
        "no newline": b"@@ -1 +1 @@\n-random string of text\n\\ No newline at end of file\n"
        b"+random of string text\n\\ No newline at end of file\n",
        "tabs newline": b"@@ -0,0 +1 @@\n+random string of text\n",
        "unicode": "@@ -0,0 +1 @@\n+こんにちは世界\n".encode(),
        "control": b"@@ -0,0 +1 @@\n+x\n",
        "binary": b"Binary files a/foo and b/foo differ\n",
    }
    for index, (name, (before, after)) in enumerate(cases.items()):
        relative = f"case{index}.git"
        path, left, right = two_commits(
            config, relative, before, after, object_format=object_format
        )
        got = await commit_diff(
            client, Request(repository=repo(relative), left_commit_id=left, right_commit_id=right)
        )
        assert got == reference(path, left, right), name
        assert [f.patch for f in got] == ([expected_patches[name]] if name != "same" else []), name
        assert [f.binary for f in got] == ([name == "binary"] if name != "same" else [])


async def test_mode_change_and_rename_with_mode_change(client: Client, config: Config) -> None:
    data = b"random string of text\n"
    path, left, right = two_commits(
        config, "m.git", {b"foo": data, b"keep": b"k\n"}, {b"goo": data, b"keep": b"k\n"},
        executable=frozenset({b"goo", b"keep"}),
    )  # fmt: skip
    got = await commit_diff(
        client, Request(repository=repo("m.git"), left_commit_id=left, right_commit_id=right)
    )
    oid = blob_id(path, data)
    assert got == [
        File(b"foo", b"goo", oid, oid, 0o100644, 0o100755),
        File(b"keep", b"keep", blob_id(path, b"k\n"), blob_id(path, b"k\n"), 0o100644, 0o100755),
    ]


@pytest.mark.parametrize("object_format", FORMATS)
async def test_type_change_is_deletion_plus_addition(
    client: Client, config: Config, object_format: str
) -> None:
    path, left, right = two_commits(
        config,
        "t.git",
        {b"type-change": b"/etc/passwd\n", b"sub": b"file\n"},
        {
            b"type-change": b"regular content\n",
            b"sub": (SUBMODULE, "2" * (40 if object_format == "sha1" else 64)),
        },
        object_format=object_format,
        symlinks_before=frozenset({b"type-change"}),
    )
    got = await commit_diff(
        client, Request(repository=repo("t.git"), left_commit_id=left, right_commit_id=right)
    )
    assert got == reference(path, left, right)
    zero = "0" * (40 if object_format == "sha1" else 64)
    link = blob_id(path, b"/etc/passwd\n")
    regular = blob_id(path, b"regular content\n")
    name = b"type-change"
    assert got[2:] == [
        File(name, name, link, zero, 0o120000, 0, patch=b"@@ -1 +0,0 @@\n-/etc/passwd\n"),
        File(name, name, zero, regular, 0, 0o100644, patch=b"@@ -0,0 +1 @@\n+regular content\n"),
    ]


async def test_diff_noprefix_in_repository_config_is_overridden(
    client: Client, config: Config
) -> None:
    path, left, right = two_commits(config, "np.git", {b"foo": b"a b c\n"}, {b"foo": b"a c b\n"})
    git(path, "config", "diff.noprefix", "true")
    for mode in (Request.DEFAULT, Request.WORDDIFF):
        got = await commit_diff(
            client,
            Request(
                repository=repo("np.git"),
                left_commit_id=left,
                right_commit_id=right,
                diff_mode=mode,
            ),
        )
        assert len(got) == 1 and got[0].patch.startswith(b"@@ -1 +1 @@\n")


async def test_word_diff(client: Client, config: Config) -> None:
    path, left, right = two_commits(
        config,
        "w.git",
        {b"word-diff": b"file with multiple words\n"},
        {b"word-diff": b"file with changed words\n"},
    )
    got = await commit_diff(
        client,
        Request(
            repository=repo("w.git"),
            left_commit_id=left,
            right_commit_id=right,
            diff_mode=Request.WORDDIFF,
        ),
    )
    assert [f.patch for f in got] == [
        b"@@ -1 +1 @@\n file with \n-multiple\n+changed\n  words\n~\n"
    ]
    assert got == reference(path, left, right, "--word-diff=porcelain")


async def test_whitespace_changes(client: Client, config: Config) -> None:
    before = {
        b"foo": b"random text of string\n",
        b"normal-change": b"\tfoo bar\n",
        b"whitespace-change": b"\tfoo bar\n",
    }
    after = {
        b"foo": b" random text of string \n",
        b"normal-change": b"\tbar foo\n",
        b"whitespace-change": b"    foo bar\n",
    }
    _, left, right = two_commits(config, "ws.git", before, after)

    async def patches(mode: int, paths: tuple[bytes, ...] = ()) -> list[tuple[bytes, bytes]]:
        request = Request(
            repository=repo("ws.git"),
            left_commit_id=left,
            right_commit_id=right,
            whitespace_changes=mode,
            paths=paths,
        )
        return [(f.from_path, f.patch) for f in await commit_diff(client, request)]

    unspecified = await patches(Request.WHITESPACE_CHANGES_UNSPECIFIED)
    assert unspecified[0] == (
        b"foo",
        b"@@ -1 +1 @@\n-random text of string\n+ random text of string \n",
    )
    ignore = await patches(Request.WHITESPACE_CHANGES_IGNORE)
    assert ignore == [
        (b"foo", b"@@ -1 +1 @@\n-random text of string\n+ random text of string \n"),
        (b"normal-change", b"@@ -1 +1 @@\n-\tfoo bar\n+\tbar foo\n"),
        (b"whitespace-change", b""),
    ]
    assert await patches(Request.WHITESPACE_CHANGES_IGNORE, (b"whitespace-change",)) == [
        (b"whitespace-change", b"")
    ]
    ignore_all = await patches(Request.WHITESPACE_CHANGES_IGNORE_ALL)
    assert ignore_all == [
        (b"foo", b""),
        (b"normal-change", b"@@ -1 +1 @@\n-\tfoo bar\n+\tbar foo\n"),
        (b"whitespace-change", b""),
    ]


async def test_path_with_b_slash_loses_the_patches_after_it(client: Client, config: Config) -> None:
    # Gitaly finds a patch's old path in `diff --git a/<old> b/<new>` as the shortest text
    # followed by " b/": "x b/y" reads as "x", matches no raw line, and from there on no
    # file gets its patch (the rest is read and dropped). Clients see this from Gitaly.
    path, left, right = two_commits(
        config, "q.git", {}, {b"a": b"1\n", b"x b/y": b"2\n", b"z": b"3\n"}
    )
    got = await commit_diff(
        client, Request(repository=repo("q.git"), left_commit_id=left, right_commit_id=right)
    )
    expected = reference(path, left, right)
    assert [f.from_path for f in got] == [b"a", b"x b/y", b"z"]
    assert got[0] == expected[0]
    for file, full in zip(got[1:], expected[1:], strict=True):
        assert full.patch
        assert file == File(**{**vars(full), "patch": b"", "messages": 1})


async def test_large_patch_split_in_pieces(client: Client, config: Config) -> None:
    # 200 KiB of patch: more than the parser's streaming flush and many 5 KiB pieces.
    text = b"".join(b"line %06d of a long file\n" % i for i in range(8000))
    path, left, right = two_commits(
        config, "big.git", {b"a": b"x\n"}, {b"a": b"y\n", b"big.txt": text}
    )
    expected = reference(path, left, right)
    for request in (
        Request(repository=repo("big.git"), left_commit_id=left, right_commit_id=right),
        Request(
            repository=repo("big.git"),
            left_commit_id=left,
            right_commit_id=right,
            enforce_limits=True,
            max_files=10,
            max_lines=100_000,
            max_bytes=10_000_000,
            max_patch_bytes=500_000,
        ),
    ):
        got = await commit_diff(client, request)
        assert got == expected
        assert got[1].messages == -(-len(got[1].patch) // MSG) > 30


async def test_blob_over_big_file_threshold_is_binary(client: Client, config: Config) -> None:
    # Gitaly's core.bigFileThreshold (50 MiB): a blob over it is binary without a look.
    data = b"1" * (50 * 1024 * 1024) + b"\n\n\n\nb\n"
    _, left, right = two_commits(config, "huge.git", {b"huge": b"a\n"}, {b"huge": data})
    got = await commit_diff(
        client, Request(repository=repo("huge.git"), left_commit_id=left, right_commit_id=right)
    )
    assert [(f.binary, f.patch) for f in got] == [
        (True, b"Binary files a/huge and b/huge differ\n")
    ]

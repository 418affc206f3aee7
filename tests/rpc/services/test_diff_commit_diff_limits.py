"""CommitDiff's limits and collapsing: upstream's table case by case, the upper bounds,
and random histories under random limits against a plain model of Gitaly's rules."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.helpers import Client
from tests.repos import build_history, histories
from tests.rpc.services.test_diff_common import (
    FORMATS,
    File,
    Request,
    commit_diff,
    new_repo,
    own_server,
    reference,
    repo,
    two_commits,
)
from trio_gitaly.config import Config

LIMITS_BEFORE = {
    b"a.aa": b"a\na\na\na\na\na\na\n",
    b"b.bb": b"b\nb\nb\n\nthis line is a bit longer and will change\nb\nb\nb\n",
    b"c.cc": b"will change up front\nc\nc\nc\nc\nc\nwill change in the end\n",
}
LIMITS_AFTER = {
    b"a.aa": b"a\na\na\nb\na\na\na\n",
    b"b.bb": b"b\nb\nb\n\nmultiple\nlines\nare\ninserted\ninto\nthe\nmiddle\nb\nb\nb\n",
    b"c.cc": b"some changes up front\nc\nc\nc\nc\nc\nsome changes in the end\n",
}
BIG = 9000
HARD = dict(enforce_limits=True, max_files=BIG, max_lines=BIG, max_bytes=BIG, max_patch_bytes=BIG)
SAFE = dict(HARD, collapse_diffs=True, safe_max_files=BIG, safe_max_lines=BIG, safe_max_bytes=BIG)
# (request fields, files as "path[:flag]" with flag collapsed, overflow or too_large):
# upstream's table first.
LIMIT_CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({}, ["a.aa", "b.bb", "c.cc"]),
    (dict(HARD, max_files=2), ["a.aa", "b.bb", ":overflow"]),
    (dict(HARD, max_files=2, collect_all_paths=True), ["a.aa", "b.bb", "c.cc:overflow"]),
    (dict(HARD, max_lines=30), ["a.aa", "b.bb", ":overflow"]),
    (dict(HARD, max_lines=30, collect_all_paths=True), ["a.aa", "b.bb", "c.cc:overflow"]),
    (dict(HARD, max_bytes=150), ["a.aa", "b.bb", ":overflow"]),
    (dict(HARD, max_bytes=150, collect_all_paths=True), ["a.aa", "b.bb", "c.cc:overflow"]),
    (
        dict(HARD, max_patch_bytes=10, max_patch_bytes_for_file_extension={".bb": BIG}),
        ["a.aa:too_large", "b.bb", "c.cc:too_large"],
    ),
    (dict(SAFE, safe_max_files=1), ["a.aa", "b.bb:collapsed", "c.cc:collapsed"]),
    (dict(SAFE, safe_max_lines=20), ["a.aa", "b.bb:collapsed", "c.cc"]),
    (dict(SAFE, safe_max_bytes=120), ["a.aa", "b.bb:collapsed", "c.cc"]),
    # Not in upstream's table: enforce_limits with nothing set stops at once; without
    # max_patch_bytes every patch is too large; the hard limits need enforce_limits.
    (dict(enforce_limits=True), [":overflow"]),
    (dict(HARD, max_patch_bytes=0), ["a.aa:too_large", "b.bb:too_large", "c.cc:too_large"]),
    (dict(max_files=1, max_lines=1, max_bytes=1, max_patch_bytes=1), ["a.aa", "b.bb", "c.cc"]),
    # collapse_diffs without safe limits collapses everything with a line in it.
    (dict(collapse_diffs=True), ["a.aa:collapsed", "b.bb:collapsed", "c.cc:collapsed"]),
]


def describe(file: File) -> str:
    flags = [
        name
        for name, value in (
            ("collapsed", file.collapsed),
            ("overflow", file.overflow_marker),
            ("too_large", file.too_large),
        )
        if value
    ]
    return ":".join([file.from_path.decode(), *flags]) if flags else file.from_path.decode()


async def test_limits(client: Client, config: Config) -> None:
    path, left, right = two_commits(config, "limits.git", LIMITS_BEFORE, LIMITS_AFTER)
    full = {f.from_path: f for f in reference(path, left, right)}
    for fields, expected in LIMIT_CASES:
        request = Request(
            repository=repo("limits.git"), left_commit_id=left, right_commit_id=right, **fields
        )
        got = await commit_diff(client, request)
        assert [describe(f) for f in got] == expected, fields
        for file in got:
            if file.collapsed or file.too_large or file.overflow_marker:
                assert file.patch == b""
            else:
                assert file == full[file.from_path]
            if file.overflow_marker and not file.from_path:
                assert file == File(overflow_marker=True)


async def test_safe_limits_capped_at_upper_bound(client: Client, config: Config) -> None:
    # safe_max_files is capped at 500: the 501st file and later collapse.
    files = {b"f%04d" % i: b"x\n" for i in range(503)}
    _, left, right = two_commits(config, "many.git", {}, files)
    request = Request(
        repository=repo("many.git"), left_commit_id=left, right_commit_id=right,
        collapse_diffs=True, safe_max_files=10**9, safe_max_lines=10**9, safe_max_bytes=10**9,
    )  # fmt: skip
    got = await commit_diff(client, request)
    assert [f.collapsed for f in got] == [False] * 500 + [True] * 3


async def test_max_patch_bytes_capped_at_upper_bound(client: Client, config: Config) -> None:
    # max_patch_bytes is capped at 500 KiB (512000 bytes), whatever the request says.
    def text(lines: int) -> bytes:
        return b"".join(b"line %08d\n" % i for i in range(lines))

    files = {b"small": text(30_000), b"large": text(40_000)}  # 450 KB and 600 KB of patch
    path, left, right = two_commits(config, "mpb.git", {}, files)
    request = Request(
        repository=repo("mpb.git"), left_commit_id=left, right_commit_id=right,
        enforce_limits=True, max_files=10, max_lines=10**9, max_bytes=10**9,
        max_patch_bytes=10**9,
    )  # fmt: skip
    got = await commit_diff(client, request)
    assert [(f.to_path, f.too_large) for f in got] == [(b"large", True), (b"small", False)]
    assert got[1] == reference(path, left, right)[1]


# -- random histories and limits -------------------------------------------------------


def model(files: list[File], fields: dict[str, Any]) -> list[File]:
    """Gitaly's limit rules on whole reference patches (no streaming, no early drops)."""
    enforce = fields.get("enforce_limits", False)
    collapse = fields.get("collapse_diffs", False)
    collect = fields.get("collect_all_paths", False)

    def hard(name: str) -> int:
        return fields.get(name, 0) if enforce else 0

    out: list[File] = []
    nlines = nbytes = 0
    stopped = False
    for nfiles, ref in enumerate(files, 1):
        file = File(**{k: v for k, v in vars(ref).items() if k != "messages"})
        lines = [ln for ln in file.patch.splitlines(keepends=True) if not ln.startswith(b"@@")]
        if stopped:
            lines = [ln for ln in lines if not ln.startswith((b"---", b"+++"))]
            file.patch = b""
        nlines += len(lines)
        nbytes += sum(map(len, lines))
        if (
            collapse
            and lines
            and (
                nfiles > fields.get("safe_max_files", 0)
                or nlines > fields.get("safe_max_lines", 0)
                or nbytes > fields.get("safe_max_bytes", 0)
            )
        ):
            nlines, nbytes = nlines - len(lines), nbytes - len(file.patch)
            file.patch, file.collapsed = b"", True
        if enforce:
            if len(file.patch) >= hard("max_patch_bytes"):
                nlines, nbytes = nlines - len(lines), nbytes - len(file.patch)
                file.patch, file.too_large = b"", True
            if (
                nfiles > hard("max_files")
                or nlines >= hard("max_lines")
                or nbytes >= hard("max_bytes")
            ):
                if not collect:
                    out.append(File(overflow_marker=True))
                    return out
                file.patch, file.overflow_marker, stopped = b"", True, True
        out.append(file)
    return out


_limit_fields = st.fixed_dictionaries(
    {},
    optional={
        "enforce_limits": st.booleans(),
        "collapse_diffs": st.booleans(),
        "collect_all_paths": st.booleans(),
        "max_files": st.integers(0, 6),
        "max_lines": st.integers(0, 40),
        "max_bytes": st.integers(0, 800),
        "max_patch_bytes": st.integers(0, 400),
        "safe_max_files": st.integers(0, 6),
        "safe_max_lines": st.integers(0, 40),
        "safe_max_bytes": st.integers(0, 800),
    },
)


@given(history=histories(max_commits=5), data=st.data())
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_random_histories(
    config: Config,
    connect: Callable[..., Client],
    history: list,  # type: ignore[type-arg]
    data: st.DataObject,
) -> None:
    # A path with " b/" in it cuts Gitaly's patch matching short (see test_diff_commit_diff).
    assume(not any(b" b/" in p for _, _, files, _ in history for p in files))
    name = f"h{os.urandom(6).hex()}.git"
    path = new_repo(config, name)
    commits = build_history(path, history, data.draw(st.sampled_from(FORMATS)))
    oids = list(commits.values())
    left = data.draw(st.sampled_from(oids))
    right = data.draw(st.sampled_from(oids))
    fields = data.draw(_limit_fields)
    expected = model(reference(path, left, right), fields)
    async with own_server(config, connect) as client:
        got = await commit_diff(
            client,
            Request(repository=repo(name), left_commit_id=left, right_commit_id=right, **fields),
        )
    assert got == expected

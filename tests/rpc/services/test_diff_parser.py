"""The `git diff --raw --patch` parser on Gitaly's own parser cases (internal/gitaly/diff).

The inputs are hand-written diffs, as upstream's; the same rules are checked against real
git output through CommitDiff in test_diff_commit_diff.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_gitaly.git.diff import (
    MAX_FILES_UPPER_BOUND,
    MAX_LINES_UPPER_BOUND,
    PATCH_FLUSH_BYTES,
    SAFE_MAX_BYTES_UPPER_BOUND,
    SAFE_MAX_FILES_UPPER_BOUND,
    SAFE_MAX_LINES_UPPER_BOUND,
    Diff,
    DiffParseError,
    DiffParser,
    Limits,
    StreamReader,
    max_patch_bytes_for,
    unescape,
)

ZERO = "0" * 40
OID1 = hashlib.sha1(b"1").hexdigest()
OID2 = hashlib.sha1(b"2").hexdigest()
OID3 = hashlib.sha1(b"3").hexdigest()
LOREM = b"+Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
LOREM += b"incididunt ut labore et dolore magna aliqua.\n"
# The limits most of upstream's cases use.
DEFAULT = Limits(
    enforce_limits=True,
    safe_max_files=3,
    safe_max_bytes=200,
    safe_max_lines=200,
    max_files=5,
    max_bytes=10_000_000,
    max_lines=10_000_000,
    max_patch_bytes=100_000,
)


class Source:
    """git's stdout stand-in: hands out `data` in reads of at most `step` bytes."""

    def __init__(self, data: bytes, step: int = 1 << 16) -> None:
        self._data = data
        self._step = step

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = min(self._step, max_bytes or self._step)
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk


async def parse(
    data: bytes, limits: Limits, *, step: int = 1 << 16, object_format: str = "sha1"
) -> list[Diff]:
    parser = DiffParser(Source(data, step), object_format, limits)
    diffs = []
    while (diff := await parser.next_diff()) is not None:
        diffs.append(replace(diff))
    return diffs


def added(path: bytes, to_id: str, **fields: object) -> Diff:
    return Diff(
        from_id=ZERO,
        to_id=to_id,
        new_mode=0o100644,
        from_path=path,
        to_path=path,
        status=b"A",
        **fields,  # type: ignore[arg-type]
    )


def new_file(path: str, to_id: str, patch: bytes) -> bytes:
    header = (
        f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex {ZERO}..{to_id}\n"
        f"--- /dev/null\n+++ b/{path}\n"
    )
    return header.encode() + patch


def raw(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode() + b"\n"


async def test_large_diff_collapsed_when_collapse_diffs() -> None:
    big = b"@@ -0,0 +1,100000 @@\n" + LOREM * 100_000
    small = b"@@ -0,0 +1 @@\n+Lorem ipsum\n"
    data = raw(
        f":000000 100644 {ZERO} {OID1} A\tbig.txt", f":000000 100644 {ZERO} {OID2} A\tfile-00.txt"
    )
    data += new_file("big.txt", OID1, big) + new_file("file-00.txt", OID2, small)
    diffs = await parse(data, replace(DEFAULT, collapse_diffs=True))
    assert diffs == [
        added(b"big.txt", OID1, collapsed=True, line_count=100_000),
        added(b"file-00.txt", OID2, patch=small, line_count=1),
    ]


async def test_large_diff_too_large_without_collapse() -> None:
    big = b"@@ -0,0 +1,100000 @@\n" + LOREM * 100_000
    small = b"@@ -0,0 +1 @@\n+Lorem ipsum\n"
    data = raw(
        f":000000 100644 {ZERO} {OID1} A\tbig.txt", f":000000 100644 {ZERO} {OID2} A\tfile-00.txt"
    )
    data += new_file("big.txt", OID1, big) + new_file("file-00.txt", OID2, small)
    diffs = await parse(data, replace(DEFAULT, max_files=4))
    assert diffs == [
        added(b"big.txt", OID1, too_large=True, line_count=100_000),
        added(b"file-00.txt", OID2, patch=small, line_count=1),
    ]


async def test_custom_patch_limit_keeps_a_patch_below_it() -> None:
    lines = b"+Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    lines += b"incididunt ut labore et dolore magna aliqua\n"
    big = b"@@ -0,0 +1,100000 @@\n" + lines * 1000
    small = b"@@ -0,0 +1 @@\n+Lorem ipsum\n"
    data = raw(
        f":000000 100644 {ZERO} {OID1} A\tbig.txt", f":000000 100644 {ZERO} {OID2} A\tfile-00.txt"
    )
    data += new_file("big.txt", OID1, big) + new_file("file-00.txt", OID2, small)
    diffs = await parse(data, replace(DEFAULT, max_files=4, max_patch_bytes=125_000))
    assert diffs == [
        added(b"big.txt", OID1, patch=big, line_count=1000),
        added(b"file-00.txt", OID2, patch=small, line_count=1),
    ]


@pytest.mark.parametrize("empty_first", [True, False])
async def test_whitespace_only_change_has_no_patch(empty_first: bool) -> None:
    # --ignore-space-change: both files have raw lines, only one a patch.
    patch = b"@@ -1 +1,2 @@\n Lorem ipsum\n+Lorem ipsum\n"
    shown = "file-01.txt" if empty_first else "file-00.txt"
    shown_id = OID3 if empty_first else OID2
    data = raw(
        f":100644 100644 {OID1} {OID2} M\tfile-00.txt",
        f":100644 100644 {OID1} {OID3} M\tfile-01.txt",
    )
    data += (
        f"diff --git a/{shown} b/{shown}\nindex {OID1}..{shown_id} 100644\n"
        f"--- a/{shown}\n+++ b/{shown}\n"
    ).encode() + patch
    diffs = await parse(data, DEFAULT)
    modified = Diff(from_id=OID1, old_mode=0o100644, new_mode=0o100644, status=b"M")
    first = replace(modified, to_id=OID2, from_path=b"file-00.txt", to_path=b"file-00.txt")
    second = replace(modified, to_id=OID3, from_path=b"file-01.txt", to_path=b"file-01.txt")
    if empty_first:
        second = replace(second, patch=patch, line_count=2)
    else:
        first = replace(first, patch=patch, line_count=2)
    assert diffs == [first, second]


async def test_word_diff_keeps_newline_markers_and_drops_other_tilde_lines() -> None:
    data = raw(f":000000 100644 {ZERO} {OID1} A\tbig.txt")
    data += new_file("big.txt", OID1, b"@@ -0,0 +1,3 @@\n+A\n~\n+B\n~ignoreme\n+C\n~\n")
    diffs = await parse(data, DEFAULT)
    assert diffs == [
        added(b"big.txt", OID1, patch=b"@@ -0,0 +1,3 @@\n+A\n~\n+B\n+C\n~\n", line_count=5)
    ]


async def test_small_patches_collapse_once_safe_lines_are_passed() -> None:
    patch = b"@@ -0,0 +1,5 @@\n" + b"+Lorem\n" * 5
    paths = [f"expand-collapse/file-{i}.txt" for i in range(3)]
    data = raw(*(f":000000 100644 {ZERO} {OID1} A\t{path}" for path in paths))
    data += b"".join(new_file(path, OID1, patch) for path in paths)
    limits = Limits(
        enforce_limits=True,
        collapse_diffs=True,
        safe_max_lines=10,
        safe_max_files=10_000_000,
        safe_max_bytes=10_000_000,
        max_files=10_000_000,
        max_bytes=10_000_000,
        max_lines=10_000_000,
        max_patch_bytes=100_000,
    )
    diffs = await parse(data, limits)
    assert diffs == [
        added(paths[0].encode(), OID1, patch=patch, line_count=5),
        added(paths[1].encode(), OID1, patch=patch, line_count=5),
        added(paths[2].encode(), OID1, collapsed=True, line_count=5),
    ]


@pytest.mark.parametrize("step", [1, 7, 1 << 16])
async def test_long_line_without_newline_at_eof(step: int) -> None:
    patch = b"@@ -0,0 +1,100 @@\n+" + b"z" * 100_000
    data = raw(f":000000 100644 {ZERO} {OID1} A\tfile-0") + new_file("file-0", OID1, patch)
    diffs = await parse(data, Limits(max_patch_bytes=1_000_000), step=step)
    assert diffs == [added(b"file-0", OID1, patch=patch, line_count=1)]


def test_limits_are_capped_at_upper_bounds() -> None:
    limits = Limits(
        safe_max_lines=999_999_999,
        safe_max_files=999_999_999,
        safe_max_bytes=999_999_999,
        max_files=999_999_999,
        max_lines=999_999_999,
    ).bounded()
    assert limits.safe_max_bytes == SAFE_MAX_BYTES_UPPER_BOUND
    assert limits.safe_max_files == SAFE_MAX_FILES_UPPER_BOUND
    assert limits.safe_max_lines == SAFE_MAX_LINES_UPPER_BOUND
    assert limits.max_files == MAX_FILES_UPPER_BOUND
    assert limits.max_lines == MAX_LINES_UPPER_BOUND
    assert (limits.max_bytes, limits.max_patch_bytes) == (0, 0)


async def test_limit_for_file_extension_overrides_max_patch_bytes() -> None:
    big = b"@@ -0,0 +1,100 @@\n+" + (b"+" + b"z" * 100 + b"\n") * 100
    data = raw(
        f":000000 100644 {ZERO} {OID1} A\tbig.txt", f":000000 100644 {ZERO} {OID1} A\tbig.md"
    )
    data += new_file("big.txt", OID2, big) + new_file("big.md", OID2, big)
    limits = Limits(
        enforce_limits=True,
        collapse_diffs=True,
        max_patch_bytes=100,
        max_bytes=SAFE_MAX_BYTES_UPPER_BOUND,
        safe_max_bytes=SAFE_MAX_BYTES_UPPER_BOUND,
        max_files=MAX_FILES_UPPER_BOUND,
        safe_max_files=MAX_FILES_UPPER_BOUND,
        max_lines=MAX_LINES_UPPER_BOUND,
        safe_max_lines=MAX_LINES_UPPER_BOUND,
        max_patch_bytes_for_file_extension={".txt": 30_000},
    )
    txt, md = await parse(data, limits)
    assert (txt.collapsed, txt.too_large, txt.patch) == (False, False, big)
    assert (md.collapsed, md.too_large, md.patch) == (False, True, b"")


async def test_type_change_is_a_deletion_then_an_addition() -> None:
    data = f":100644 120000 {OID1} {OID2} T\tREADME.md\n".encode()
    assert await parse(data, Limits()) == [
        Diff(
            old_mode=0o100644,
            from_id=OID1,
            to_id=ZERO,
            from_path=b"README.md",
            to_path=b"README.md",
            status=b"T",
        ),
        Diff(
            new_mode=0o120000,
            from_id=ZERO,
            to_id=OID2,
            from_path=b"README.md",
            to_path=b"README.md",
            status=b"A",
        ),
    ]


@pytest.mark.parametrize(
    ("to_path", "expected"),
    [
        (b"test.txt", 2),  # extension
        (b"blah/Dockerfile", 3),  # whole name, for a name without extension
        (b"test.md", 1),
        (b".gitignore", 4),  # a dot file is all extension
        (b"test", 1),
        (b"test.txt.md", 1),  # only the last extension counts
        (b"test.md.txt", 2),
        (b"", 1),
    ],
)
def test_max_patch_bytes_for(to_path: bytes, expected: int) -> None:
    per_extension = {".txt": 2, "Dockerfile": 3, ".gitignore": 4}
    assert max_patch_bytes_for(1, per_extension, to_path) == expected


@pytest.mark.parametrize(
    ("quoted", "expected"),
    [
        (b"plain", b"plain"),
        (b"\\303\\274ber", "über".encode()),
        (b"tab\\there\\nnewline", b"tab\there\nnewline"),
        (b'q\\"uote\\\\back', b'q"uote\\back'),
        (b"\\a\\v", b"\\a\\v"),  # escapes git never writes are left as they are
        (b"\\400", b"\\400"),  # not a byte
        (b"end\\", b"end\\"),
        (b"\\12", b"\\12"),  # too short for an octal escape at the end
    ],
)
def test_unescape(quoted: bytes, expected: bytes) -> None:
    assert unescape(quoted) == expected


async def test_quoted_paths_match_their_patch_headers() -> None:
    path = 'dir/ü "q"\tx'.encode()
    quoted = '"dir/\\303\\274 \\"q\\"\\tx"'
    data = raw(f":000000 100644 {ZERO} {OID1} A\t{quoted}")
    data += (
        f'diff --git "a/dir/\\303\\274 \\"q\\"\\tx" "b/dir/\\303\\274 \\"q\\"\\tx"\n'
        f"new file mode 100644\nindex {ZERO}..{OID1}\n"
    ).encode()
    data += b"@@ -0,0 +1 @@\n+x\n"
    assert await parse(data, Limits()) == [
        added(path, OID1, patch=b"@@ -0,0 +1 @@\n+x\n", line_count=1)
    ]


async def test_rename_raw_line_has_both_paths() -> None:
    data = raw(f":100644 100755 {OID1} {OID1} R100\told name\tnew name")
    data += b"diff --git a/old name b/new name\nold mode 100644\nnew mode 100755\n"
    data += b"similarity index 100%\nrename from old name\nrename to new name\n"
    assert await parse(data, Limits()) == [
        Diff(
            from_id=OID1,
            to_id=OID1,
            old_mode=0o100644,
            new_mode=0o100755,
            from_path=b"old name",
            to_path=b"new name",
            status=b"R",
        )
    ]


async def test_sha256_raw_lines() -> None:
    zero, oid = "0" * 64, hashlib.sha256(b"1").hexdigest()
    data = raw(f":000000 100644 {zero} {oid} A\tf") + b"diff --git a/f b/f\n@@ -0,0 +1 @@\n+x\n"
    diffs = await parse(data, Limits(), object_format="sha256")
    assert [(d.from_id, d.to_id, d.patch) for d in diffs] == [(zero, oid, b"@@ -0,0 +1 @@\n+x\n")]
    with pytest.raises(DiffParseError, match="raw line regexp mismatch"):
        await parse(data, Limits(), object_format="sha1")


async def test_header_that_is_not_a_diff_header_fails() -> None:
    data = raw(f":000000 100644 {ZERO} {OID1} A\tf") + b"garbage\n"
    with pytest.raises(DiffParseError, match="diff header regexp mismatch"):
        await parse(data, Limits())


async def test_streaming_hands_out_the_same_bytes() -> None:
    patch = b"@@ -0,0 +1,5000 @@\n" + LOREM * 5000
    data = raw(f":000000 100644 {ZERO} {OID1} A\tbig.txt", f":000000 100644 {ZERO} {OID2} A\tb")
    data += new_file("big.txt", OID1, patch) + new_file("b", OID2, b"@@ -0,0 +1 @@\n+b\n")
    parts: list[tuple[bytes, bytes]] = []

    async def on_patch(diff: Diff, chunk: bytes) -> None:
        assert len(chunk) >= PATCH_FLUSH_BYTES
        parts.append((diff.from_path, chunk))

    parser = DiffParser(Source(data, 4096), "sha1", Limits(), on_patch=on_patch)
    first = await parser.next_diff()
    assert first is not None
    streamed = b"".join(chunk for path, chunk in parts if path == b"big.txt")
    assert len(parts) > 1
    assert streamed + first.patch == patch
    second = await parser.next_diff()
    assert second is not None
    assert second.patch == b"@@ -0,0 +1 @@\n+b\n"
    assert await parser.next_diff() is None


async def test_stream_reader_records() -> None:
    reader = StreamReader(Source(b"a\0bc\0tail", 1))
    assert await reader.read_until(b"\0") == (b"a\0", True)
    assert await reader.peek(3) == b"bc\0"
    assert await reader.read_until(b"\0") == (b"bc\0", True)
    assert await reader.read_until(b"\0") == (b"tail", False)
    assert await reader.read_until(b"\0") == (b"", False)


_line = st.binary(max_size=30).map(lambda b: b.replace(b"\n", b""))


@st.composite
def _diffs(draw: st.DrawFn) -> tuple[bytes, list[list[bytes]]]:
    files = draw(st.lists(st.lists(_line, max_size=12), min_size=1, max_size=6))
    raw_lines = [f":000000 100644 {ZERO} {OID1} A\tf{i}" for i in range(len(files))]
    data = raw(*raw_lines)
    for index, lines in enumerate(files):
        data += new_file(
            f"f{index}", OID1, b"@@ -0,0 +1 @@\n" + b"".join(b"+" + line + b"\n" for line in lines)
        )
    return data, files


@settings(max_examples=40, deadline=None)
@given(
    diff=_diffs(),
    step=st.integers(1, 64),
    limits=st.builds(
        Limits,
        enforce_limits=st.booleans(),
        collapse_diffs=st.booleans(),
        collect_all_paths=st.booleans(),
        max_files=st.integers(0, 8),
        max_lines=st.integers(0, 60),
        max_bytes=st.integers(0, 600),
        safe_max_files=st.integers(0, 8),
        safe_max_lines=st.integers(0, 60),
        safe_max_bytes=st.integers(0, 600),
        max_patch_bytes=st.integers(0, 300),
    ),
)
async def test_results_do_not_depend_on_read_sizes_or_dropping(
    diff: tuple[bytes, list[list[bytes]]], step: int, limits: Limits
) -> None:
    # The parser drops a patch's bytes early once its fate is sealed; the outcome must
    # be what the model (keep everything, decide at the end) gives.
    data, files = diff
    got = await parse(data, limits, step=step)
    assert got == model(files, limits)


def model(files: list[list[bytes]], limits: Limits) -> list[Diff]:
    """Gitaly's rules, applied the simple way: whole patches, decided per file."""
    out: list[Diff] = []
    nlines = nbytes = 0
    stop = False
    for index, lines in enumerate(files):
        nfiles = index + 1
        counted = [b"+" + line + b"\n" for line in lines]
        patch = b"@@ -0,0 +1 @@\n" + b"".join(counted)
        if stop:
            # "---"/"+++" lines are file headers while no patch is collected.
            counted = [line for line in counted if not line.startswith(b"+++")]
            patch = b""
        diff = added(f"f{index}".encode(), OID1, patch=patch, line_count=len(counted))
        nlines += len(counted)
        nbytes += sum(map(len, counted))
        if (
            limits.collapse_diffs
            and diff.line_count
            and (
                nfiles > limits.safe_max_files
                or nlines > limits.safe_max_lines
                or nbytes > limits.safe_max_bytes
            )
        ):
            nlines -= diff.line_count
            nbytes -= len(diff.patch)
            diff.patch = b""
            diff.collapsed = True
            diff.collect_all_paths = limits.collect_all_paths
        if limits.enforce_limits:
            if len(diff.patch) >= limits.max_patch_bytes:
                nlines -= diff.line_count
                nbytes -= len(diff.patch)
                diff.patch = b""
                diff.too_large = True
            if (
                nfiles > limits.max_files
                or nlines >= limits.max_lines
                or nbytes >= limits.max_bytes
            ):
                if limits.collect_all_paths:
                    diff.collect_all_paths = True
                    diff.patch = b""
                    stop = True
                else:
                    out.append(Diff(overflow_marker=True))
                    return out
                diff.overflow_marker = True
        out.append(diff)
    return out

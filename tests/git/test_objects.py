"""Object parsing against the git CLI: every field we parse is what git reports.

Repositories are built at run time (tests/repos.py) in SHA-1 and SHA-256; crafted objects
(signatures, odd headers) are written with `git hash-object -w --literally`.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tests.repos import GIT_ENV, FastImport, git, rich_repository
from trio_gitaly.git.objects import (
    FALLBACK_TIMESTAMP,
    Signature,
    commit_trailers,
    parse_commit,
    parse_signature,
    parse_tag,
    parse_tree,
    signature_type,
    subject_from_body,
    trailers,
)

if TYPE_CHECKING:
    from pathlib import Path

FORMATS = ["sha1", "sha256"]
GIT_TIMEOUT_S = 10
HASH_BYTES = {"sha1": 20, "sha256": 32}

PGP_SIGNATURE = (
    b"-----BEGIN PGP SIGNATURE-----\n"
    b"\n"
    b"iHUEABYKAB0WIQReCOKeBZren2AFN0T+9BKLUsDX/wUCZVNlaQAKCRD+9BKLUsDX\n"
    b"=Wt+j\n"
    b"-----END PGP SIGNATURE-----"
)
SSH_SIGNATURE = (
    b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lHAAAAAQAAADMAAAALc3NoLWVk\n-----END SSH SIGNATURE-----"
)


@pytest.fixture(params=FORMATS)
def rich(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, dict[str, str]]:
    path = str(tmp_path / "rich.git")
    return path, request.param, rich_repository(path, request.param)


def _cat(path: str, kind: str, oid: str) -> bytes:
    return git(path, "cat-file", kind, oid)


def _write(path: str, kind: str, data: bytes) -> str:
    out = git(path, "hash-object", "-t", kind, "-w", "--literally", "--stdin", input=data)
    return out.decode().strip()


def _log(path: str, oid: str, fmt: str, *flags: str) -> bytes:
    # git log re-encodes to UTF-8 (and `--encoding=none` is newer than 2.39): asking
    # for the commit's own encoding gets the bytes as stored.
    encoding = git(path, "log", "-1", "--format=%e", oid).strip() or b"UTF-8"
    return git(path, "log", "-1", f"--encoding={encoding.decode()}", *flags, f"--format={fmt}", oid)


def _signature_of(path: str, oid: str, who: str) -> Signature:
    fmt = {"author": "%an%x00%ae%x00%ad", "committer": "%cn%x00%ce%x00%cd"}[who]
    out = _log(path, oid, fmt, "--date=raw")
    name, email, date = out.removesuffix(b"\n").split(b"\0")
    timestamp, timezone = date.split(b" ")
    return Signature(name, email, int(timestamp), timezone)


# --- commits -------------------------------------------------------------------------


def test_commits_match_git_log(rich: tuple[str, str, dict[str, str]]) -> None:
    path, _, oids = rich
    for oid in git(path, "rev-list", "--all").decode().split():
        commit = parse_commit(oid, _cat(path, "commit", oid))
        fields = _log(path, oid, "%T%x00%P%x00%e%x00%B")
        tree, parents, encoding, message = fields.split(b"\0", 3)
        assert commit.oid == oid
        assert commit.tree == tree.decode()
        assert commit.parents == tuple(parents.decode().split())
        assert commit.encoding == encoding
        # %B plus the newline that ends each --format record.
        assert commit.message + b"\n" == message
        assert commit.author == _signature_of(path, oid, "author")
        assert commit.committer == _signature_of(path, oid, "committer")
        assert commit.signature == b""
        assert commit.signed_payload == _cat(path, "commit", oid)
    merge = parse_commit(oids["merge"], _cat(path, "commit", oids["merge"]))
    assert merge.parents == (oids["latin1"], oids["feature"])
    assert parse_commit(oids["root"], _cat(path, "commit", oids["root"])).parents == ()
    latin1 = parse_commit(oids["latin1"], _cat(path, "commit", oids["latin1"]))
    assert latin1.encoding == b"ISO-8859-1"
    assert latin1.subject == b"Caf\xe9 na\xefve message"
    assert latin1.author.timezone == b"-0500"


@pytest.mark.parametrize("object_format", FORMATS)
def test_octopus_merge(tmp_path: Path, object_format: str) -> None:
    build = FastImport(object_format=object_format)
    bases = [
        build.commit(f"refs/heads/b{i}", b"b\n", {b"f": b"%d" % i}, parents=[]) for i in range(4)
    ]
    octopus = build.commit("refs/heads/main", b"Octopus\n", {}, parents=bases)
    marks = build.run(str(tmp_path / "repo.git"))
    commit = parse_commit(
        marks[octopus], _cat(str(tmp_path / "repo.git"), "commit", marks[octopus])
    )
    assert commit.parents == tuple(marks[mark] for mark in bases)


@pytest.mark.parametrize(
    ("header", "signature", "kind"),
    [
        ("gpgsig", PGP_SIGNATURE, "PGP"),
        ("gpgsig", SSH_SIGNATURE, "SSH"),
        ("gpgsig-sha256", PGP_SIGNATURE, "PGP"),
        (
            "gpgsig",
            b"-----BEGIN SIGNED MESSAGE-----\nMIAGCSqG\n-----END SIGNED MESSAGE-----",
            "X509",
        ),
        ("gpgsig", b"not armoured\nat all", ""),
    ],
)
@pytest.mark.parametrize("object_format", FORMATS)
def test_signed_commit(
    tmp_path: Path, object_format: str, header: str, signature: bytes, kind: str
) -> None:
    path = str(tmp_path / "repo.git")
    git(".", "init", "--bare", "--quiet", f"--object-format={object_format}", path)
    tree = git(path, "mktree", input=b"").decode().strip()
    unsigned = (
        f"tree {tree}\n".encode()
        + b"author A <a@example.com> 1700000000 +0100\n"
        + b"committer C <c@example.com> 1700000001 -0230\n"
    )
    folded = signature.replace(b"\n", b"\n ")
    message = b"Signed subject\n\nBody.\n"
    oid = _write(path, "commit", unsigned + f"{header} ".encode() + folded + b"\n\n" + message)

    commit = parse_commit(oid, _cat(path, "commit", oid))

    assert commit.signature == signature
    assert signature_type(commit.signature) == kind
    assert commit.signed_payload == unsigned + b"\n" + message
    assert commit.message == message
    assert commit.subject == b"Signed subject"
    assert commit.committer == Signature(b"C", b"c@example.com", 1700000001, b"-0230")
    # git agrees on everything but the signature.
    assert git(path, "log", "-1", "--format=%s%x00%an%x00%cd", "--date=raw", oid) == (
        b"Signed subject\0A\x001700000001 -0230\n"
    )


def test_headers_after_signature_stay_in_payload_but_are_not_parsed(tmp_path: Path) -> None:
    path = str(tmp_path / "repo.git")
    git(".", "init", "--bare", "--quiet", path)
    tree = git(path, "mktree", input=b"").decode().strip()
    head = f"tree {tree}\n".encode() + b"author A <a@b> 1 +0000\ncommitter A <a@b> 1 +0000\n"
    after = b"encoding ISO-8859-1\n"
    data = head + b"gpgsig " + PGP_SIGNATURE.replace(b"\n", b"\n ") + b"\n" + after + b"\nmsg\n"
    commit = parse_commit("x", data)
    assert commit.signed_payload == head + after + b"\nmsg\n"
    assert commit.encoding == b""  # Gitaly leaves headers after a signature alone


def test_extra_headers_and_malformed_lines(tmp_path: Path) -> None:
    data = (
        b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n"
        b"author A <a@b> 1 +0000\n"
        b"committer A <a@b> 1 +0000\n"
        b"mergetag object 1234\n type commit\n tag v1\n"
        b"nospace\n"
        b"x-custom value here\n"
        b"\n"
        b"subject\r\nmore\n"
    )
    commit = parse_commit("x", data)
    assert commit.extra_headers == (
        (b"mergetag", b"object 1234\ntype commit\ntag v1"),
        (b"x-custom", b"value here"),
    )
    assert b"nospace" not in commit.signed_payload
    assert commit.subject == b"subject"
    assert commit.body == b"subject\r\nmore\n"


def test_commit_without_message_or_blank_line() -> None:
    commit = parse_commit("x", b"tree abc\nparent def\nauthor A <a@b> 5 +0000")
    assert (commit.tree, commit.parents, commit.message) == ("abc", ("def",), b"")
    assert commit.author == Signature(b"A", b"a@b", 5, b"+0000")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            b"Jane Doe <jane@example.com> 1700000000 +0100",
            Signature(b"Jane Doe", b"jane@example.com", 1700000000, b"+0100"),
        ),
        (b"No Email", Signature(b"No Email")),
        (b"Unclosed <email 5 +0000", Signature(b"Unclosed")),
        (b"No Date <a@b>", Signature(b"No Date", b"a@b")),
        (b"Bad <a@b> notanumber +0000", Signature(b"Bad", b"a@b", FALLBACK_TIMESTAMP, b"+0000")),
        (b"Neg <a@b> -5 +0000", Signature(b"Neg", b"a@b", FALLBACK_TIMESTAMP, b"+0000")),
        (
            b"Huge <a@b> 99999999999999999999 +0000",
            Signature(b"Huge", b"a@b", FALLBACK_TIMESTAMP, b"+0000"),
        ),
        (
            b"Big <a@b> 9007199254740993 +0000",
            Signature(b"Big", b"a@b", FALLBACK_TIMESTAMP, b"+0000"),
        ),
        (b"Under <a@b> 1_000 +0000", Signature(b"Under", b"a@b", FALLBACK_TIMESTAMP, b"+0000")),
        (b"Plus <a@b> +7 +0000", Signature(b"Plus", b"a@b", 7, b"+0000")),
        (b"NoTz <a@b> 7", Signature(b"NoTz", b"a@b", 7)),
        (b"Extra <a@b> 7 +0000 junk", Signature(b"Extra", b"a@b", 7)),
        (b"Two  Spaces  <a@b> 7 +0000", Signature(b"Two  Spaces ", b"a@b", 7, b"+0000")),
        (b"<a@b> 7 +0000", Signature(b"", b"a@b", 7, b"+0000")),
    ],
)
def test_parse_signature_fallbacks(line: bytes, expected: Signature) -> None:
    assert parse_signature(line) == expected


def test_subject_rule() -> None:
    assert subject_from_body(b"one\ntwo\n") == b"one"
    assert subject_from_body(b"one\r\n") == b"one"
    assert subject_from_body(b"only") == b"only"
    assert subject_from_body(b"\nsecond") == b""
    assert subject_from_body(b"") == b""


# --- tags ----------------------------------------------------------------------------


def test_tags_match_for_each_ref(rich: tuple[str, str, dict[str, str]]) -> None:
    path, _, _ = rich
    atoms = [
        "objectname", "object", "type", "tag", "taggername", "taggeremail:trim",
        "taggerdate:raw", "contents", "contents:signature", "objecttype",
    ]  # fmt: skip
    fmt = "%00".join(f"%({atom})" for atom in atoms)
    records = git(path, "for-each-ref", f"--format={fmt}%01", "refs/tags").split(b"\x01\n")[:-1]
    seen = 0
    for record in records:
        oid, target, kind, name, tagger, email, date, contents, sig, objtype = record.split(b"\0")
        if objtype != b"tag":
            continue
        seen += 1
        tag = parse_tag(oid.decode(), _cat(path, "tag", oid.decode()))
        timestamp, timezone = date.split(b" ")
        assert (tag.object_oid, tag.object_type, tag.name) == (target.decode(), kind.decode(), name)
        assert tag.tagger == Signature(tagger, email, int(timestamp), timezone)
        assert tag.message == contents
        assert tag.signature == sig
    assert seen == 4


@pytest.mark.parametrize("object_format", FORMATS)
def test_signed_tag(tmp_path: Path, object_format: str) -> None:
    path = str(tmp_path / "repo.git")
    git(".", "init", "--bare", "--quiet", f"--object-format={object_format}", path)
    tree = git(path, "mktree", input=b"").decode().strip()
    message = b"Release\n\nNotes.\n" + PGP_SIGNATURE + b"\n"
    data = (
        f"object {tree}\ntype tree\ntag v1\n".encode()
        + b"tagger T <t@example.com> 1700000000 +0000\n\n"
        + message
    )
    oid = git(path, "mktag", input=data).decode().strip()
    tag = parse_tag(oid, _cat(path, "tag", oid))
    assert (tag.object_oid, tag.object_type, tag.name) == (tree, "tree", b"v1")
    assert tag.message == message
    assert tag.signature == PGP_SIGNATURE
    assert signature_type(tag.signature) == "PGP"
    sig = git(path, "for-each-ref", "--format=%(contents:signature)", "refs/tags")
    assert sig == b""  # not a ref yet: mktag only writes the object
    git(path, "update-ref", "refs/tags/v1", oid)
    assert (
        git(path, "for-each-ref", "--format=%(contents:signature)", "refs/tags")
        == PGP_SIGNATURE + b"\n\n"
    )
    assert parse_tag(oid, _cat(path, "tag", oid), name=b"refname").name == b"refname"


def test_tag_oddities() -> None:
    # No tagger (old git), a signature at the very start (not taken, as Gitaly), no body.
    tag = parse_tag("x", b"object abc\ntype commit\ntag t\n\n-----BEGIN PGP SIGNATURE-----\n")
    assert tag.tagger is None
    assert tag.signature == b""
    assert parse_tag("x", b"object abc\ntype commit\ntag t").message == b""


# --- trees ---------------------------------------------------------------------------


def test_trees_match_ls_tree(rich: tuple[str, str, dict[str, str]]) -> None:
    path, object_format, _ = rich
    trees = git(path, "rev-list", "--all", "--objects", "--filter=object:type=tree").split()
    kinds: set[tuple[int, str]] = set()
    for oid in {t.decode() for t in trees if len(t) in (40, 64)}:
        if git(path, "cat-file", "-t", oid) != b"tree\n":
            continue
        entries = parse_tree(_cat(path, "tree", oid), HASH_BYTES[object_format])
        expected = []
        for record in git(path, "ls-tree", "-z", oid).split(b"\0")[:-1]:
            meta, name = record.split(b"\t", 1)
            mode, kind, entry_oid = meta.split(b" ")
            expected.append((int(mode, 8), kind.decode(), entry_oid.decode(), name))
        assert [(e.mode, e.kind, e.oid, e.path) for e in entries] == expected
        kinds |= {(e.mode, e.kind) for e in entries}
    assert kinds >= {
        (0o100644, "blob"),
        (0o100755, "blob"),
        (0o120000, "blob"),
        (0o040000, "tree"),
        (0o160000, "commit"),
    }


@pytest.mark.parametrize(
    "data",
    [b"100644 name", b"100644 name\0short", b" name\0" + b"1" * 20, b"100644 \0" + b"1" * 20],
)
def test_malformed_trees_raise(data: bytes) -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_tree(data, 20)


# --- trailers ------------------------------------------------------------------------


def _git_trailers(message: bytes) -> list[tuple[bytes, bytes]]:
    out = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        check=True,
        env=GIT_ENV,
        cwd="/",
        timeout=GIT_TIMEOUT_S,
    ).stdout
    return [tuple(line.split(b": ", 1)) for line in out.split(b"\n")[:-1]]  # type: ignore[misc]


TRAILER_MESSAGES = [
    b"subject\n\nbody\n\nSigned-off-by: A <a@b>\n",
    b"subject\n\nKey: v\n continued\n\tmore\nOther : x\n",
    b"Key: only a title\n",
    b"s\n\nfoo bar\nSigned-off-by: x\n\n",
    b"s\n\na: b\n# comment\n",
    b"s\n\na: b\n---\nc: d\n",
    b"s\n\na: b\n--- \nc: d\n",
    b"s\n\na: b\n---x\n",
    b"s\n\nx\ny\nz\nSigned-off-by: q\n",
    b"s\n\nx\ny\nz\nw\nSigned-off-by: q\n",
    b"s\n\nfoo: bar\r\nbaz: q\r\n",
    b"s\n\nfoo: bar",
    b"s\n\n(cherry picked from commit abc)\nsome text\nmore\n",
    b"s\n\nKey Two: v\n",
    b"s\n\nKey\t: v\nEmpty:\n",
    b"s\n\nx: 1\n\n# ------------------------ >8 ------------------------\ny: 2\n",
    b"s\n\nx: 1\n\nConflicts:\n\tfile.c\n",
    b"s\n\n a: leading space\nb: c\n",
    b"s\n\nurl: http://example.com:8080/x\n",
    b"s\n\nCo-authored-by: A <a@b>\nCo-authored-by: B <b@c>\nChange-Id: I0123\n",
    b"",
    b"\n\n\n",
    b"s\n\n\xc3\xa9t\xc3\xa9: v\n",
    b"s\n\nK: v\n \n  \nL: w\n",
]


@pytest.mark.parametrize("message", TRAILER_MESSAGES)
def test_trailers_match_git(message: bytes) -> None:
    assert trailers(message) == _git_trailers(message)


_TRAILER_LINES = st.sampled_from(
    [
        b"Signed-off-by: A <a@b>",
        b"Key: value",
        b"Key : value",
        b"Key-2:value",
        b" continuation",
        b"\tcontinuation",
        b"",
        b"   ",
        b"# comment",
        b"---",
        b"--- patch",
        b"plain text line",
        b"(cherry picked from commit 0123)",
        b"bad key: v",
        b"Empty:",
        b"a:b:c",
        b"CRLF: x\r",
        b"# ------------------------ >8 ------------------------",
        b"Conflicts:",
        b"\tpath",
        b":no token",
    ]
)
_LINES = st.lists(st.one_of(_TRAILER_LINES, st.binary(max_size=12)), max_size=12)


@settings(max_examples=300, deadline=None)
@given(lines=_LINES, final_newline=st.booleans())
def test_trailers_match_git_on_random_messages(lines: list[bytes], final_newline: bool) -> None:
    message = b"\n".join(line.replace(b"\0", b"") for line in lines)
    if final_newline:
        message += b"\n"
    # git 2.39 loops forever on a scissors line after a "---" divider (its cut-off lies
    # past the divider and an unsigned length wraps): nothing to compare with there.
    divider = next((i for i, line in enumerate(lines) if line.startswith(b"---")), len(lines))
    assume(not any(b">8" in line for line in lines[divider:]))
    assert trailers(message) == _git_trailers(message)


def test_commit_trailers_apply_gitaly_limits() -> None:
    many = b"s\n\n" + b"".join(b"K%d: v\n" % i for i in range(100))
    assert len(commit_trailers(many)) == 64
    long_value = b"s\n\nA: 1\nB: " + b"x" * 600 + b"\nC: 3\n"
    assert commit_trailers(long_value) == [(b"A", b"1")]

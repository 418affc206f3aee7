"""The Go path rules and page tokens the tree RPCs reproduce, checked on Go's own examples."""

from __future__ import annotations

import base64

import pytest

from trio_gitaly.git.objects import TreeEntry
from trio_gitaly.git.trees import go_clean, go_dir, go_join, is_local
from trio_gitaly.rpc.services.commit.trees_pagination import decode_token, encode_token, go_string


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        (b"a/c", b"a/c"),
        (b"a//c", b"a/c"),
        (b"a/c/.", b"a/c"),
        (b"a/c/b/..", b"a/c"),
        (b"/../a/c", b"/a/c"),
        (b"/../a/b/../././/c", b"/a/c"),
        (b"", b"."),
        (b"../../a", b"../../a"),
        (b"a/../..", b".."),
        (b"./", b"."),
        (b"/", b"/"),
    ],
)
def test_go_clean(path: bytes, cleaned: bytes) -> None:
    assert go_clean(path) == cleaned


@pytest.mark.parametrize(
    ("path", "directory"),
    [
        (b"/a/b/c", b"/a/b"),
        (b"a/b/c", b"a/b"),
        (b"/a/", b"/a"),
        (b"a/", b"a"),
        (b"/", b"/"),
        (b"", b"."),
        (b"a", b"."),
        (b"./a", b"."),
        (b"../x", b".."),
    ],
)
def test_go_dir(path: bytes, directory: bytes) -> None:
    assert go_dir(path) == directory


@pytest.mark.parametrize(
    ("elements", "joined"),
    [
        ((b"a", b"b", b"c"), b"a/b/c"),
        ((b"a", b"b/c"), b"a/b/c"),
        ((b"a/b", b"c"), b"a/b/c"),
        ((b"a/b", b"/c"), b"a/b/c"),
        ((b"a/b", b"../../../xyz"), b"../xyz"),
        ((b"", b""), b""),
        ((b"a", b""), b"a"),
        ((b"", b"a"), b"a"),
        ((b"docs/", b"x"), b"docs/x"),
    ],
)
def test_go_join(elements: tuple[bytes, ...], joined: bytes) -> None:
    assert go_join(*elements) == joined


@pytest.mark.parametrize(
    ("path", "local"),
    [
        (b"a/b", True),
        (b"a/../b", True),
        (b"a/../../b", False),
        (b"../b", False),
        (b"/a", False),
        (b"", False),
        (b".", True),
        (b"..", False),
        (b"a/..", True),
        (b"..a", True),
    ],
)
def test_is_local(path: bytes, local: bool) -> None:
    assert is_local(path) == local


def test_go_string_replaces_each_invalid_byte() -> None:
    assert go_string(b"caf\xe9") == "caf\ufffd"
    # A truncated three-byte sequence is two invalid bytes to Go.
    assert go_string(b"\xe2\x9cx") == "\ufffd\ufffdx"
    assert go_string(b"\xed\xa0\x80") == "\ufffd" * 3
    assert go_string("✓".encode()) == "✓"


def test_encode_token_as_go_json() -> None:
    token = encode_token("a<b>&c\u2028".encode(), "f" * 40)
    assert base64.b64decode(token) == (
        b'{"file_name":"a\\u003cb\\u003e\\u0026c\\u2028","tree_oid":"' + b"f" * 40 + b'"}'
    )
    assert base64.b64decode(encode_token(b't\tq"\x01\x08', "0")) == (
        b'{"file_name":"t\\tq\\"\\u0001\\b","tree_oid":"0"}'
    )


def entry(path: bytes, oid: str = "1" * 40) -> TreeEntry:
    return TreeEntry(0o100644, "blob", oid, path)


def test_decode_token_kinds() -> None:
    # Anything that is not base64 of a JSON object is an old-style object id token.
    for raw in ("non-existent", "a" * 40, base64.b64encode(b'"x"').decode(), ""):
        decoded = decode_token(raw)
        assert (decoded.start, decoded.by_path) == (raw, False)
    numeric = base64.b64encode(b'{"file_name": 5}').decode()
    assert decode_token(numeric).by_path is False
    assert decode_token(base64.b64encode(b"{}").decode()).by_path is True
    assert decode_token(base64.b64encode(b"null").decode()).start == ""
    token = decode_token(encode_token(b"caf\xe9", "abc"))
    assert (token.start, token.by_path, token.tree_oid) == ("caf\ufffd", True, "abc")
    assert token.matches(entry(b"caf\xe9"))
    assert not token.matches(entry(b"cafe"))
    folded = decode_token(base64.b64encode(b'{"File_Name":"x","file_name":"y"}').decode())
    assert folded.start == "y"
    assert decode_token("2" * 40).matches(entry(b"any", "2" * 40))

"""Parsing of raw git objects: commits, tags and trees, for SHA-1 and SHA-256 repositories.

Pure functions, bytes in and frozen msgspec Structs out (a tenth of a dataclass's
construction cost, which was half of parsing a commit). Commits and tags are parsed as
Gitaly's catfile parser does (internal/git/catfile/parse_commit.go, parser.go), which
follows git's own header rules and tolerates the malformed objects git tolerates, so
that every RPC reports the same fields Gitaly would.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from trio_gitaly.git.trailers import commit_trailers as commit_trailers
from trio_gitaly.git.trailers import trailers as trailers

__all__ = [
    "FALLBACK_TIMESTAMP",
    "MAX_TIMESTAMP",
    "Commit",
    "Signature",
    "Tag",
    "TreeEntry",
    "commit_trailers",
    "parse_commit",
    "parse_signature",
    "parse_tag",
    "parse_tree",
    "signature_type",
    "subject_from_body",
    "trailers",
]

#: Timestamps above 2**53 seconds are refused, as git refuses them (`date_overflows`).
MAX_TIMESTAMP: Final = 1 << 53
#: What Gitaly reports for an unparsable, negative or too large timestamp: the largest
#: Unix time a Go `time.Time` holds (Gitaly's `fallbackTimeValue`).
FALLBACK_TIMESTAMP: Final = (1 << 63) - 62135596801

_SIGNATURE_HEADERS: Final = frozenset({b"gpgsig", b"gpgsig-sha256"})
# The armour header of a signature (its first line) -> Gitaly's SignatureType name.
_SIGNATURE_TYPES: Final = {
    b"-----BEGIN SIGNED MESSAGE-----": "X509",
    b"-----BEGIN PGP MESSAGE-----": "PGP",
    b"-----BEGIN PGP SIGNATURE-----": "PGP",
    b"-----BEGIN SSH SIGNATURE-----": "SSH",
}
# Go's strconv.ParseInt(s, 10, 64) syntax: an optional sign and decimal digits only
# (Python's int() would also take underscores and surrounding whitespace).
_DECIMAL_RE: Final = re.compile(rb"[+-]?[0-9]+")
_INT64_MAX: Final = (1 << 63) - 1
_TREE_MODE: Final = 0o040000
_SUBMODULE_MODE: Final = 0o160000


class Signature(msgspec.Struct, frozen=True):
    """An author, committer or tagger line: "Name <email> 1700000000 +0100".

    Attributes:
        name: everything before "<", less one trailing space.
        email: between "<" and ">"; empty when either is missing.
        timestamp: seconds since the epoch; None when the line has no date at all,
            `FALLBACK_TIMESTAMP` when the date is not a valid one.
        timezone: the offset exactly as written (b"+0100"), or empty.
    """

    name: bytes
    email: bytes = b""
    timestamp: int | None = None
    timezone: bytes = b""


class Commit(msgspec.Struct, frozen=True):
    """A parsed commit object.

    Attributes:
        oid: the commit's object id (hex).
        tree: the root tree's object id.
        parents: parent ids in header order (none for a root commit).
        author, committer: the identities; `Signature(b"")` when the header is missing.
        message: everything after the blank line ending the headers, as stored.
        encoding: the `encoding` header, empty when absent.
        signature: the first gpgsig / gpgsig-sha256 block without its header name and
            continuation spaces, or empty.
        signed_payload: the commit without its signature headers: what was signed.
        extra_headers: other headers (mergetag, ...) in order; continuation lines are
            joined with newlines, as git unfolds them.
    """

    oid: str
    tree: str
    parents: tuple[str, ...]
    author: Signature
    committer: Signature
    message: bytes
    encoding: bytes = b""
    signature: bytes = b""
    signed_payload: bytes = b""
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()

    @property
    def subject(self) -> bytes:
        """The first line of the message (Gitaly's rule, see `subject_from_body`)."""
        return subject_from_body(self.message)

    @property
    def body(self) -> bytes:
        """The full message: Gitaly's "body" includes the subject."""
        return self.message


class Tag(msgspec.Struct, frozen=True):
    """A parsed annotated tag object.

    Attributes:
        oid: the tag object's id.
        object_oid, object_type: what the tag points at (`object` and `type` headers).
        name: the `tag` header.
        tagger: the tagger, or None for a tag without one (old git allowed that).
        message: everything after the blank line, as stored, signature included (Gitaly
            reports it so; trimming is the RPC's business).
        signature: the signature block at the end of the message, or empty.
    """

    oid: str
    object_oid: str
    object_type: str
    name: bytes
    tagger: Signature | None
    message: bytes
    signature: bytes = b""


class TreeEntry(msgspec.Struct, frozen=True):
    """One entry of a tree object.

    Attributes:
        mode: the file mode (0o100644, 0o100755, 0o120000, 0o040000, 0o160000).
        kind: "tree", "commit" (a submodule) or "blob".
        oid: the entry's object id (hex).
        path: the entry's name within its tree.
    """

    mode: int
    kind: str
    oid: str
    path: bytes


def parse_signature(value: bytes) -> Signature:
    """Parse the value of an author/committer/tagger header, tolerating garbage.

    Gitaly's fallbacks: no "<" leaves everything in the name; no ">" leaves the email
    empty; no date leaves the timestamp None; a date that is not a non-negative number
    up to `MAX_TIMESTAMP` becomes `FALLBACK_TIMESTAMP`; the timezone is kept only when
    it is the only field after the date.
    """
    name, lt, rest = value.partition(b"<")
    name = name.removesuffix(b" ")
    if not lt:
        return Signature(name)
    email, gt, rest = rest.partition(b">")
    if not gt:
        return Signature(name)
    fields = rest.split()
    if not fields:
        return Signature(name, email)
    timestamp = _parse_timestamp(fields[0])
    timezone = fields[1] if len(fields) == 2 else b""
    return Signature(name, email, timestamp, timezone)


def _parse_timestamp(field: bytes) -> int:
    if not _DECIMAL_RE.fullmatch(field):
        return FALLBACK_TIMESTAMP
    seconds = int(field)
    if seconds > _INT64_MAX or seconds < 0 or seconds > MAX_TIMESTAMP:
        return FALLBACK_TIMESTAMP
    return seconds


def subject_from_body(body: bytes) -> bytes:
    """A commit's subject: the message up to its first newline, less trailing CR/LF."""
    return body.partition(b"\n")[0].rstrip(b"\r\n")


def signature_type(signature: bytes) -> str:
    """ "PGP", "X509", "SSH", or "" for an unknown kind, from the signature's armour line."""
    return _SIGNATURE_TYPES.get(signature.partition(b"\n")[0], "")


def parse_commit(oid: str, data: bytes) -> Commit:
    """Parse a raw commit object as Gitaly does (a state machine over its lines).

    Headers are read up to the first signature header; headers after a signature are
    not interpreted (git ignores them too) but stay in the signed payload. A header
    line without a space is dropped, as Gitaly drops it.

    Args:
        oid: the commit's id, reported as given.
        data: the object's content (`git cat-file commit`).
    """
    # The common commit (no signature, every header line well formed) is its own
    # signed payload: split it at the blank line instead of walking it byte by byte.
    end = data.find(b"\n\n")
    head = data if end < 0 else data[: end + 1]
    if not data.startswith(b"\n") and b"gpgsig" not in head:
        headers = _CommitHeaders()
        for line in head.split(b"\n"):
            key, space, value = line.partition(b" ")
            if space:
                headers.add(key, value)
            elif line:
                return _parse_commit_lines(oid, data)
        return headers.commit(oid, b"" if end < 0 else data[end + 2 :], b"", data)
    return _parse_commit_lines(oid, data)


class _CommitHeaders:
    """The interpreted headers of a commit, in the order they come."""

    __slots__ = ("author", "committer", "encoding", "extra", "parents", "tree")

    def __init__(self) -> None:
        self.tree = ""
        self.parents: list[str] = []
        self.author = self.committer = Signature(b"")
        self.encoding = b""
        self.extra: list[list[bytes]] = []

    def add(self, key: bytes, value: bytes) -> None:
        """One header line, split at its first space, without its newline."""
        if key == b"tree":
            self.tree = _text(value)
        elif key == b"parent":
            self.parents.append(_text(value))
        elif key == b"author":
            self.author = parse_signature(value)
        elif key == b"committer":
            self.committer = parse_signature(value)
        elif key == b"encoding":
            self.encoding = value
        elif key == b"" and self.extra:
            # A continuation line of the previous extra header (mergetag's tag text).
            self.extra[-1][1] += b"\n" + value
        elif key:
            self.extra.append([key, value])

    def commit(self, oid: str, message: bytes, signature: bytes, payload: bytes) -> Commit:
        """The parsed commit."""
        return Commit(
            oid=oid,
            tree=self.tree,
            parents=tuple(self.parents),
            author=self.author,
            committer=self.committer,
            message=message,
            encoding=self.encoding,
            signature=signature,
            signed_payload=payload,
            extra_headers=tuple((key, value) for key, value in self.extra) if self.extra else (),
        )


def _parse_commit_lines(oid: str, data: bytes) -> Commit:
    """`parse_commit` for any commit: signed, or with malformed header lines."""
    headers = _CommitHeaders()
    signatures: list[bytearray] = []
    payload = bytearray()
    state = "header"
    pos = 0
    message = b""
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        line = data[pos:end]
        pos = end
        if line == b"\n":
            payload += line
            message = data[pos:]
            payload += message
            break
        if state == "signature":
            if line.startswith(b" "):
                signatures[-1] += line[1:]
                continue
            key, space, value = line.partition(b" ")
            if space and key in _SIGNATURE_HEADERS:
                signatures.append(bytearray(value))
                continue
            state = "unexpected"
        if state == "unexpected":
            payload += line
            continue
        key, space, value = line.partition(b" ")
        if not space:
            continue
        value = value.removesuffix(b"\n")
        if key in _SIGNATURE_HEADERS:
            signatures.append(bytearray(value + b"\n"))
            state = "signature"
            continue
        payload += line
        headers.add(key, value)
    signature = bytes(signatures[0]).removesuffix(b"\n") if signatures else b""
    return headers.commit(oid, message, signature, bytes(payload))


def parse_tag(oid: str, data: bytes, *, name: bytes | None = None) -> Tag:
    """Parse a raw tag object as Gitaly does.

    Args:
        oid: the tag object's id, reported as given.
        data: the object's content (`git cat-file tag`).
        name: overrides the `tag` header (Gitaly reports the ref's name when it has one).
    """
    object_oid = object_type = ""
    tag_name = name or b""
    tagger: Signature | None = None
    pos = 0
    message = b""
    while pos < len(data):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        line = data[pos:end]
        pos = end
        if line == b"\n":
            message = data[pos:]
            break
        key, space, value = line.removesuffix(b"\n").partition(b" ")
        if not space:
            continue
        if key == b"object":
            object_oid = _text(value)
        elif key == b"type":
            object_type = _text(value)
        elif key == b"tag" and not tag_name:
            tag_name = value
        elif key == b"tagger":
            tagger = parse_signature(value)
    # Gitaly's ExtractTagSignature: the signature starts at the first armour line,
    # unless that is the very first byte (then the whole message is taken as text).
    index = message.find(b"-----BEGIN")
    signature = message[index:].removesuffix(b"\n") if index > 0 else b""
    return Tag(oid, object_oid, object_type, tag_name, tagger, message, signature)


def parse_tree(data: bytes, hash_bytes: int) -> list[TreeEntry]:
    """Parse a raw tree object: entries of "<octal mode> <name>\\0<binary oid>".

    Args:
        data: the object's content (`git cat-file tree`).
        hash_bytes: the binary object id length: 20 for SHA-1, 32 for SHA-256.

    Raises:
        ValueError: the tree is truncated or an entry is malformed.
    """
    entries: list[TreeEntry] = []
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        nul = data.find(b"\0", space + 1) if space >= 0 else -1
        if space <= pos or nul <= space + 1 or nul + 1 + hash_bytes > len(data):
            raise ValueError(f"malformed tree entry at offset {pos}")
        mode_text = data[pos:space]
        if not mode_text.isdigit():
            raise ValueError(f"malformed tree entry mode {mode_text!r}")
        mode = int(mode_text, 8)
        oid = data[nul + 1 : nul + 1 + hash_bytes].hex()
        entries.append(TreeEntry(mode, _kind(mode), oid, data[space + 1 : nul]))
        pos = nul + 1 + hash_bytes
    return entries


def _kind(mode: int) -> str:
    # git's object_type(mode): directories are trees, gitlinks are commits, and
    # everything else (regular, executable, symlink) is a blob.
    file_type = mode & 0o170000
    if file_type == _TREE_MODE:
        return "tree"
    if file_type == _SUBMODULE_MODE:
        return "commit"
    return "blob"


def _text(value: bytes) -> str:
    # Object ids and type names are ASCII in any well-formed object; a corrupt one
    # must not make parsing fail.
    return value.decode("utf-8", "replace")

"""GetTreeEntries page tokens, byte for byte as Gitaly makes and reads them.

A token is base64 of the JSON `{"file_name": <last path>, "tree_oid": <listed tree>}`,
encoded as Go's encoding/json does it (compact, HTML characters escaped, each invalid
UTF-8 byte replaced by U+FFFD). Anything that does not decode that way is an old-style
token: the object id of the last entry.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from trio_gitaly.errors import internal
from trio_gitaly.git.objects import TreeEntry

# Go's json.Marshal escapes these even inside strings (HTML safety).
_GO_JSON_ESCAPES: Final = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_TOKEN_FIELDS: Final = ("file_name", "tree_oid")


def go_string(data: bytes) -> str:
    """`data` as Go sees a string it must encode: each invalid UTF-8 byte is U+FFFD."""
    text = data.decode("utf-8", "surrogateescape")
    return "".join("\ufffd" if "\udc80" <= ch <= "\udcff" else ch for ch in text)


def encode_token(path: bytes, tree_oid: str) -> str:
    """The page token that continues after the entry at `path` of tree `tree_oid`."""
    text = json.dumps(
        {"file_name": go_string(path), "tree_oid": tree_oid},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    for char, escape in _GO_JSON_ESCAPES.items():
        text = text.replace(char, escape)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


@dataclass(frozen=True)
class PageToken:
    """A decoded token: where to continue, and whether that is a path or an object id."""

    start: str
    by_path: bool
    tree_oid: str = ""

    def matches(self, entry: TreeEntry) -> bool:
        """Whether `entry` is the one the previous page ended with."""
        if self.by_path:
            return go_string(entry.path) == self.start
        return entry.oid == self.start


def _refuse_constant(name: str) -> Any:
    # Go's decoder knows no NaN or Infinity.
    raise ValueError(name)


def decode_token(token: str) -> PageToken:
    """Read a client's page token as Gitaly does (never fails: unreadable is an oid)."""
    old_style = PageToken(token, by_path=False)
    try:
        # Go's base64 decoder skips line breaks; everything else must be valid.
        raw = base64.b64decode(token.replace("\r", "").replace("\n", ""), validate=True)
        value = json.loads(go_string(raw), object_pairs_hook=list, parse_constant=_refuse_constant)
    except (binascii.Error, ValueError):
        return old_style
    if value is None:
        return PageToken("", by_path=True)
    if not isinstance(value, list):
        return old_style
    fields = {"file_name": "", "tree_oid": ""}
    for key, item in value:
        # Go matches object keys to struct fields case-insensitively; the last one wins.
        name = next((f for f in _TOKEN_FIELDS if f.casefold() == key.casefold()), None)
        if name is None or item is None:
            continue
        if not isinstance(item, str):
            return old_style
        fields[name] = item
    return PageToken(fields["file_name"], by_path=True, tree_oid=fields["tree_oid"])


def paginate(
    entries: Sequence[TreeEntry], token: str, limit: int, tree_oid: str
) -> tuple[Sequence[TreeEntry], str]:
    """One page of `entries` and the token for the next ("" when this is the last).

    `limit` < 0 means the rest; 0 means nothing (and no token).

    Raises:
        GitalyError: INTERNAL "could not find starting OID: ..." for a token that names
            no entry (Gitaly's message and code).
    """
    decoded = decode_token(token)
    index = -1
    if not decoded.start:
        index = 0
    else:
        for position, entry in enumerate(entries):
            if decoded.matches(entry):
                index = position + 1
                break
    if index < 0:
        raise internal(f"could not find starting OID: {decoded.start}")
    if limit == 0:
        return [], ""
    if limit < 0 or index + limit >= len(entries):
        return entries[index:], ""
    page = entries[index : index + limit]
    return page, encode_token(page[-1].path, tree_oid)

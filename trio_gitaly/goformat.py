"""How Go prints values, for messages that must match Gitaly's byte for byte.

Gitaly quotes paths, revisions and git's stderr with Go's %q (strconv.Quote); clients
and log searches see those texts, so ours are produced the same way, in one place.
"""

from __future__ import annotations

import unicodedata
from typing import Final


def go_quote(value: bytes | str) -> str:
    """`value` quoted as Go's %q (strconv.Quote) does, for messages that must match Gitaly's."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    out = ['"']
    text = data.decode("utf-8", "surrogateescape")
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            # A byte that is not UTF-8 (surrogateescape put it here).
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in ('"', "\\"):
            out.append("\\" + char)
        else:
            out.append(_go_escape(char))
    out.append('"')
    return "".join(out)


def go_quote_rune(char: str) -> str:
    """A rune as Go's %q prints it: single quotes, the same escapes."""
    if char == "'":
        return "'\\''"
    if char == "\\":
        return "'\\\\'"
    return "'" + _go_escape(char) + "'"


_GO_ESCAPES: Final = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def _go_escape(char: str) -> str:
    if char in _GO_ESCAPES:
        return _GO_ESCAPES[char]
    code = ord(char)
    if char == " " or (code >= 0x20 and _printable(char)):
        return char
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _printable(char: str) -> bool:
    # Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols (and the ASCII
    # space, handled by the caller).
    return unicodedata.category(char)[0] in "LMNPS"


def go_strerror(exc: OSError) -> str:
    """An OSError's text as Go prints an errno: lower case ("exec format error")."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]

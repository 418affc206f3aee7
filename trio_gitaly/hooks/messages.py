"""The messages `/post_receive` returns, laid out for the pusher's terminal as Gitaly does.

git prefixes every line a hook prints with "remote: ", so an 80-column terminal leaves
72 columns: an "alert" is framed by two 72-character rules, its words wrapped at 68
columns (2 columns of padding each side) and each line centred. Widths count bytes, as
Gitaly's do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from trio_gitaly.gitlab.client import PostReceiveMessage

TERMINAL_WIDTH: Final = 80
MESSAGE_WIDTH: Final = TERMINAL_WIDTH - len("remote: ")
PADDING: Final = 2
TEXT_WIDTH: Final = MESSAGE_WIDTH - 2 * PADDING


class InvalidMessageError(ValueError):
    """A message of a type other than "basic" or "alert".

    Attributes:
        rendered: what Gitaly has printed by the time it notices (the messages before,
            and the blank line that starts this one).
    """

    def __init__(self, message_type: str, rendered: bytes) -> None:
        super().__init__(f"invalid message type: {message_type}")
        self.rendered = rendered


def render_messages(messages: Sequence[PostReceiveMessage]) -> bytes:
    """The text printed for `messages`: each after a blank line, followed by two newlines.

    Raises:
        InvalidMessageError: a message has an unknown type.
    """
    out = bytearray()
    for message in messages:
        out += b"\n"
        if message.type == "basic":
            out += message.message.encode()
        elif message.type == "alert":
            out += render_alert(message.message)
        else:
            raise InvalidMessageError(message.type, bytes(out))
        out += b"\n\n"
    return bytes(out)


def render_alert(text: str) -> bytes:
    """`text` word-wrapped and centred between two rules of `MESSAGE_WIDTH` "="."""
    rule = b"=" * MESSAGE_WIDTH
    out = bytearray(rule + b"\n\n")
    line = bytearray()
    for word in text.split():
        encoded = word.encode()
        if len(line) + 1 + len(encoded) > TEXT_WIDTH:
            out += _centred(line) + b"\n"
            line.clear()
        line += encoded + b" "
    out += _centred(line) + b"\n\n" + rule
    return bytes(out)


def _centred(line: bytes | bytearray) -> bytes:
    text = bytes(line).strip()
    return b" " * max((MESSAGE_WIDTH - len(text)) // 2, 0) + text

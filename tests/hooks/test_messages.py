"""Post-receive messages laid out as Gitaly does (its TestPrintAlert cases)."""

from __future__ import annotations

import pytest

from trio_gitaly.gitlab.client import PostReceiveMessage
from trio_gitaly.hooks.messages import InvalidMessageError, render_alert, render_messages

LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Curabitur nec mi lectus. Fusce "
    "eu ligula in odio hendrerit posuere. Ut semper neque vitae maximus accumsan. In malesuada "
    "justo nec leo congue egestas. Vivamus interdum nec libero ac convallis. Praesent euismod "
    "et nunc vitae vulputate. Mauris tincidunt ligula urna, bibendum vestibulum sapien luctus "
    "eu. Donec sed justo in erat dictum semper. Ut porttitor augue in felis gravida "
    "scelerisque. Morbi dolor justo, accumsan et nulla vitae, luctus consectetur est. Donec "
    "aliquet erat pellentesque suscipit elementum. Cras posuere eros ipsum, a tincidunt tortor "
    "laoreet quis. Mauris varius nulla vitae placerat imperdiet. Vivamus ut ligula odio. Cras "
    "nec euismod ligula."
)
RULE = "=" * 72
LOREM_ALERT = f"""{RULE}

   Lorem ipsum dolor sit amet, consectetur adipiscing elit. Curabitur
  nec mi lectus. Fusce eu ligula in odio hendrerit posuere. Ut semper
    neque vitae maximus accumsan. In malesuada justo nec leo congue
  egestas. Vivamus interdum nec libero ac convallis. Praesent euismod
    et nunc vitae vulputate. Mauris tincidunt ligula urna, bibendum
  vestibulum sapien luctus eu. Donec sed justo in erat dictum semper.
  Ut porttitor augue in felis gravida scelerisque. Morbi dolor justo,
  accumsan et nulla vitae, luctus consectetur est. Donec aliquet erat
      pellentesque suscipit elementum. Cras posuere eros ipsum, a
   tincidunt tortor laoreet quis. Mauris varius nulla vitae placerat
      imperdiet. Vivamus ut ligula odio. Cras nec euismod ligula.

{RULE}"""
SHORT_ALERT = f"""{RULE}

                Lorem ipsum dolor sit amet, consectetur

{RULE}"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [(LOREM, LOREM_ALERT), ("Lorem ipsum dolor sit amet, consectetur", SHORT_ALERT)],
)
def test_alert(text: str, expected: str) -> None:
    assert render_alert(text).decode() == expected


def test_messages() -> None:
    rendered = render_messages(
        [PostReceiveMessage("hello\nworld", "basic"), PostReceiveMessage("access denied", "alert")]
    )
    assert rendered.decode() == (
        f"\nhello\nworld\n\n\n{RULE}\n\n{' ' * 29}access denied\n\n{RULE}\n\n"
    )
    assert render_messages([]) == b""


def test_unknown_type_keeps_what_was_printed() -> None:
    with pytest.raises(InvalidMessageError) as info:
        render_messages([PostReceiveMessage("a", "basic"), PostReceiveMessage("b", "banner")])
    assert str(info.value) == "invalid message type: banner"
    assert info.value.rendered == b"\na\n\n\n"

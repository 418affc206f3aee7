"""BoundaryWatcher finds the end of a client's requests however the bytes are split."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_gitaly.transport import pktline

WANT = pktline.encode(b"want " + b"a" * 40 + b"\n")
HAVE = pktline.encode(b"have " + b"b" * 40 + b"\n")
DONE = pktline.encode(pktline.DONE)
BIG = pktline.encode(b"x" * 60000)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


def _first_seen(watcher: pktline.BoundaryWatcher, pieces: list[bytes]) -> int | None:
    consumed = 0
    for piece in pieces:
        consumed += len(piece)
        if watcher.feed(piece):
            return consumed
    return None


@given(st.lists(st.integers(min_value=0), max_size=8))
def test_done_is_found_at_its_end_whatever_the_split(cuts: list[int]) -> None:
    stream = WANT + pktline.flush() + BIG + HAVE + DONE + b"PACK..."
    seen = _first_seen(pktline.BoundaryWatcher(pktline.DONE), _split(stream, cuts))
    assert seen is not None
    assert seen >= len(stream) - len(b"PACK...")


@given(st.lists(st.integers(min_value=0), max_size=8))
def test_a_payload_containing_done_is_not_the_boundary(cuts: list[int]) -> None:
    stream = pktline.encode(b"have done\n") + pktline.encode(b"xdone\n") + WANT
    assert _first_seen(pktline.BoundaryWatcher(pktline.DONE), _split(stream, cuts)) is None


def test_flush_boundary_ignores_delimiters() -> None:
    watcher = pktline.BoundaryWatcher(pktline.FLUSH)
    assert not watcher.feed(pktline.encode(b"argument HEAD\n") + b"0001")
    assert watcher.feed(b"0000")


def test_a_malformed_header_stops_the_search() -> None:
    watcher = pktline.BoundaryWatcher(pktline.DONE)
    assert not watcher.feed(b"zzzz" + DONE)
    assert not watcher.feed(DONE)


def test_encode_counts_the_header() -> None:
    assert pktline.encode(b"done\n") == b"0009done\n"

"""Watching a pkt-line stream as it passes: where the client's negotiation ends.

Only lengths are parsed, never payloads beyond the few bytes compared, so watching costs
nothing per byte of a pack.
"""

from __future__ import annotations

from typing import Final

#: The packet that ends an upload-pack negotiation (protocol v0, v1 and v2 alike).
DONE: Final = b"done\n"
FLUSH: Final = b"0000"
_HEADER_BYTES: Final = 4
# 0000 flush, 0001 delimiter, 0002 response-end: packets with no payload.
_SPECIAL_MAX: Final = 3


def flush() -> bytes:
    """A flush packet."""
    return FLUSH


def encode(payload: bytes) -> bytes:
    """One pkt-line carrying `payload`."""
    return b"%04x" % (len(payload) + _HEADER_BYTES) + payload


class BoundaryWatcher:
    """Finds the first packet equal to `boundary` in a pkt-line stream fed in chunks.

    `boundary` is a payload (b"done\\n") or `FLUSH` for the flush packet. After a
    malformed header it stops looking (git will reject the stream itself).
    """

    def __init__(self, boundary: bytes) -> None:
        self._boundary = boundary
        self._pending = bytearray()
        self._skip = 0
        self.seen = False
        self._broken = False

    def feed(self, chunk: bytes) -> bool:
        """Consume `chunk`; return True once the boundary packet has been seen."""
        if self.seen or self._broken:
            return self.seen
        data = memoryview(chunk)
        if self._skip:
            step = min(self._skip, len(data))
            self._skip -= step
            data = data[step:]
        self._pending += data
        while not self._skip and len(self._pending) >= _HEADER_BYTES:
            try:
                length = int(self._pending[:_HEADER_BYTES], 16)
            except ValueError:
                self._broken = True
                return False
            if length <= _SPECIAL_MAX:
                del self._pending[:_HEADER_BYTES]
                if self._boundary == FLUSH and length == 0:
                    self.seen = True
                    return True
                continue
            if length < _HEADER_BYTES:
                self._broken = True
                return False
            if len(self._pending) < length and length - _HEADER_BYTES > len(self._boundary):
                # Longer than the boundary: skip it without buffering its payload.
                self._skip = length - len(self._pending)
                self._pending.clear()
                return False
            if len(self._pending) < length:
                return False
            if bytes(self._pending[_HEADER_BYTES:length]) == self._boundary:
                self.seen = True
                return True
            del self._pending[:length]
        return False

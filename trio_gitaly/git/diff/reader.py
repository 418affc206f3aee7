"""Buffered reads from a git process's stdout, for the diff-output parsers."""

from __future__ import annotations

from typing import Final, Protocol

#: Read size from git's stdout.
READ_BYTES: Final = 64 * 1024


class ByteSource(Protocol):
    """Where the parser reads git's output from (a trio ReceiveStream)."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray: ...


class StreamReader:
    """Buffered reads from git's stdout: peeks, delimited records, a line in pieces."""

    def __init__(self, source: ByteSource) -> None:
        self._source = source
        self._buf = bytearray()
        self._pos = 0
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        data = await self._source.receive_some(READ_BYTES)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    async def peek(self, size: int) -> bytes:
        """Up to `size` bytes from the current position (fewer only at EOF)."""
        while len(self._buf) - self._pos < size and await self._fill():
            pass
        return bytes(self._buf[self._pos : self._pos + size])

    async def read_until(self, delimiter: bytes = b"\n") -> tuple[bytes, bool]:
        """The next record with its one-byte `delimiter`, and whether it had one (False
        only at EOF, with what was left, possibly nothing)."""
        scanned = self._pos
        while True:
            end = self._buf.find(delimiter, scanned)
            if end >= 0:
                record = bytes(self._buf[self._pos : end + 1])
                self._pos = end + 1
                return record, True
            scanned = len(self._buf)
            before = self._pos
            if not await self._fill():
                record = bytes(self._buf[self._pos :])
                self._pos = len(self._buf)
                return record, False
            scanned -= before  # `_fill` moved the unread bytes to the front

    def buffered_line(self) -> bytes | None:
        """The next line with its newline if it is all buffered (not consumed), else None."""
        end = self._buf.find(b"\n", self._pos)
        return bytes(self._buf[self._pos : end + 1]) if end >= 0 else None

    def skip(self, size: int) -> None:
        """Consume `size` buffered bytes."""
        self._pos += size

    async def read_piece(self) -> tuple[bytes, bool]:
        """The rest of the current line, or as much of it as is buffered; and whether
        the line ended (at its newline or at EOF)."""
        while True:
            if self._pos < len(self._buf):
                end = self._buf.find(b"\n", self._pos)
                stop = end + 1 if end >= 0 else len(self._buf)
                piece = bytes(self._buf[self._pos : stop])
                self._pos = stop
                return piece, end >= 0
            if not await self._fill():
                return b"", True

    async def skip_line(self) -> None:
        """Discard the rest of the current line without holding it."""
        done = False
        while not done:
            _, done = await self.read_piece()

    async def drain(self) -> None:
        """Read and discard everything up to EOF."""
        self._buf.clear()
        self._pos = 0
        while await self._fill():
            self._buf.clear()

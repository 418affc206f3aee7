"""The gateway's side of one ASGI exchange: the request body in, git's output out.

Both directions stream one chunk at a time. hypercorn (0.17, trio worker) bounds what it
holds for us: request body events wait in a channel of `serve.APP_QUEUE_EVENTS` entries
(at most one socket read, 64 KiB, each) and its reader stops reading the socket while the
channel is full; a response chunk is written to the socket before `send` returns. So a
push or a clone costs a few chunks of memory whatever the size of its pack. (That write
is shielded from cancellation: a client that stops reading is cut off by the kernel,
see `serve.STALLED_CLIENT_TIMEOUT_S`.)

hypercorn never cancels a request whose client went away: it puts `http.disconnect` in
the request's channel and drops what the app still sends. The watcher here turns that
message into a cancellation of the git session, which kills git.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Final

import trio

from trio_gitaly.errors import GitalyError, invalid_argument
from trio_gitaly.http.app import Receive, Send

#: Most bytes one gunzip step may produce: a small compressed body can inflate hugely,
#: and git must take each step before the next one is made.
GUNZIP_STEP_BYTES: Final = 64 * 1024
# gzip framing (not zlib's, not raw deflate) for zlib.decompressobj.
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS

Headers = Sequence[tuple[bytes, bytes]]

#: What git http-backend sends so that no proxy or browser caches a response.
NO_CACHE: Final[Headers] = (
    (b"expires", b"Fri, 01 Jan 1980 00:00:00 GMT"),
    (b"pragma", b"no-cache"),
    (b"cache-control", b"no-cache, max-age=0, must-revalidate"),
)


class RequestBody:
    """A `ByteSource` over the ASGI request body, gunzipped if the client compressed it.

    `session` is the cancel scope the git command runs in: a client that disconnects
    (while its body is read, or later, while the response is sent) cancels it, and so
    does a malformed gzip body (then `failure` says why). Failing by cancellation keeps
    the error out of the session's nurseries, which would wrap it in groups.
    """

    def __init__(self, receive: Receive, *, gzip: bool) -> None:
        self._receive = receive
        self._inflate = zlib.decompressobj(_GZIP_WBITS) if gzip else None
        self._compressed = b""  # input the inflater has not consumed yet
        self._more = True
        # Set once `read` no longer calls receive(): from then on the watcher does.
        self._released = trio.Event()
        self.session = trio.CancelScope()
        self.disconnected = False
        self.failure: GitalyError | None = None

    async def read(self) -> bytes:
        """The next chunk of the body; b"" at its end.

        Cancellation: raises Cancelled; the event being received stays queued. A client
            that disconnects, or a malformed or truncated gzip body, cancels `session`
            (the caller's scope), as documented above.
        """
        while True:
            if self._compressed:
                try:
                    data = self._gunzip(self._compressed)
                except zlib.error as exc:
                    return await self._fail(f"malformed gzip request body: {exc}")
                if data:
                    return data
                continue
            if not self._more:
                if self._inflate is not None and not self._inflate.eof:
                    return await self._fail("truncated gzip request body")
                self._released.set()
                return b""
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._more = False
                self._gone()
                return await self._stop()
            self._more = bool(message.get("more_body", False))
            body: bytes = message.get("body", b"")
            if self._inflate is not None:
                self._compressed = body
            elif body:
                return body

    def _gunzip(self, data: bytes) -> bytes:
        assert self._inflate is not None
        if self._inflate.eof:
            # git sends one gzip member; bytes after it are not part of the request.
            self._compressed = b""
            return b""
        out = self._inflate.decompress(data, GUNZIP_STEP_BYTES)
        self._compressed = self._inflate.unconsumed_tail
        return out

    async def _fail(self, message: str) -> bytes:
        self.failure = invalid_argument(message)
        self._compressed = b""
        self.session.cancel()
        return await self._stop()

    async def _stop(self) -> bytes:
        # Raises the Cancelled just requested, when read inside `session`; otherwise
        # the body just ends here.
        await trio.lowlevel.checkpoint()
        self._released.set()
        return b""

    def release(self) -> None:
        """Hand receive() to the watcher: git will read no more of the body."""
        self._released.set()

    async def watch(self) -> None:
        """Once the body is read (or released), wait for the client to go away.

        What is left of an unread body is discarded, so hypercorn never waits for room
        in a full channel. Cancellation: stops watching.
        """
        await self._released.wait()
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._gone()
                return

    def _gone(self) -> None:
        self.disconnected = True
        self.session.cancel()


class ResponseBody:
    """The response, started with the first chunk: a failure before it can be an error.

    `write` is a transport `Sink`; `finish` ends the body (also after a failure: the
    client then finds the pkt-line stream cut short and reports it).
    """

    def __init__(self, send: Send, content_type: str) -> None:
        self._send = send
        self._headers = [(b"content-type", content_type.encode()), *NO_CACHE]
        self.started = False
        self.bytes_sent = 0

    async def write(self, chunk: bytes) -> None:
        """Send one chunk; returns once hypercorn wrote it to the socket.

        Cancellation: raises Cancelled; the chunk may have been sent or not.
        """
        await self._start()
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        self.bytes_sent += len(chunk)

    async def finish(self) -> None:
        """End the response (an empty 200 if nothing was written)."""
        await self._start()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _start(self) -> None:
        if not self.started:
            self.started = True
            await self._send(
                {"type": "http.response.start", "status": 200, "headers": self._headers}
            )


async def send_text(send: Send, status: int, text: str, headers: Headers = ()) -> None:
    """A whole short plain-text response (errors, refusals)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *NO_CACHE, *headers],
        }
    )
    await send({"type": "http.response.body", "body": text.encode()})

"""`trio-gitaly top`: watch a running server's nursery tree, live.

Connects to the server's `/-/events` websocket (http/events.py) on its HTTP listener
and draws each snapshot it sends (several a second) with rich, full screen, until `q`
or Ctrl-C. `--json` prints the snapshots as JSON lines instead, `--once` only the first
one: `trio-gitaly top --once --json | jq .rpcs` is the scripting interface. Not on a
terminal (or with `--once`), it prints one frame and exits.

A server that cannot be reached, or refuses the token, is one line on stderr and exit
status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import termios
import time
import tty
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from trio_gitaly.clients.channel import TOKEN_ENV, client_token
from trio_gitaly.defaults import EMBEDDED_PROMETHEUS_LISTEN_ADDR

if TYPE_CHECKING:
    import trio
    from trio_websocket import WebSocketConnection

#: The HTTP listener of the embedded default config.
DEFAULT_ADDRESS: Final = f"http://{EMBEDDED_PROMETHEUS_LISTEN_ADDR}"
EVENTS_PATH: Final = "/-/events"
#: How long connecting (TCP and the websocket handshake) may take.
CONNECT_TIMEOUT_S: Final = 5.0
#: How long closing the websocket may take once we are done.
DISCONNECT_TIMEOUT_S: Final = 1.0
#: Largest snapshot accepted; the server bounds its documents well below this.
MAX_SNAPSHOT_BYTES: Final = 16 * 1024 * 1024
#: Close codes that mean the server left on purpose (normal closure, going away).
_GOODBYE_CODES: Final = (1000, 1001)

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1

_DESCRIPTION: Final = f"""\
Watch a running trio-gitaly server: its nursery tree, listeners and connections,
in-flight RPCs, limiter queues, catfile cache and background workers, refreshed
several times a second. q or Ctrl-C quits.

The address is the server's HTTP listener (prometheus_listen_addr), default
{DEFAULT_ADDRESS}. With [auth] token set on the server, the token is read from
--token-file, else ${TOKEN_ENV}.

Exit status: 0 when quit or when the server stopped; 1 when it cannot be reached,
refuses the token, or the connection breaks."""


class TopError(Exception):
    """Why top cannot go on; the message is the one line the user sees."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `top` subcommand on `commands` (the CLI's subparsers)."""
    top = commands.add_parser(
        "top",
        help="watch a running server's nursery tree, live",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.set_defaults(handler=run)
    top.add_argument("--address", metavar="URL", default=DEFAULT_ADDRESS, help="http://HOST:PORT")
    top.add_argument("--token-file", metavar="PATH", help="file holding the server's token")
    top.add_argument("--once", action="store_true", help="show one snapshot and exit")
    top.add_argument("--json", action="store_true", help="print snapshots as JSON lines")


def run(args: argparse.Namespace) -> int:
    """Run `trio-gitaly top` with parsed `args`; return the exit status."""
    import trio

    try:
        url = events_url(args.address)
        token = client_token(args.token_file)
        return trio.run(_main, url, token, args.once, args.json)
    except KeyboardInterrupt:
        return EXIT_OK
    except (TopError, OSError) as exc:
        print(f"trio-gitaly top: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def events_url(address: str) -> str:
    """The websocket URL of `/-/events` for the HTTP listener at `address`
    (http://HOST:PORT, or HOST:PORT); the listener serves plain HTTP only."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "http", address
    host = rest.split("/", 1)[0]
    if scheme != "http" or not host:
        raise TopError(f"invalid address {address!r}: expected http://HOST:PORT")
    return f"ws://{host}{EVENTS_PATH}"


async def _main(url: str, token: str, once: bool, as_json: bool) -> int:
    from trio_websocket import ConnectionRejected, HandshakeError, open_websocket_url

    headers = []
    if token:
        from trio_gitaly.clients.channel import sign

        credential = f"Bearer {sign(token, int(time.time()))}"
        headers.append((b"authorization", credential.encode()))
    connecting = True
    try:
        async with open_websocket_url(
            url,
            extra_headers=headers,
            max_message_size=MAX_SNAPSHOT_BYTES,
            connect_timeout=CONNECT_TIMEOUT_S,
            disconnect_timeout=DISCONNECT_TIMEOUT_S,
        ) as ws:
            connecting = False
            if as_json:
                return await _print_json(ws, once)
            return await _show(ws, once)
    except ConnectionRejected as exc:
        reason = (exc.body or b"").decode(errors="replace").strip()
        raise TopError(f"{url}: refused ({exc.status_code}): {reason}") from None
    except HandshakeError as exc:
        if not connecting:
            return EXIT_OK  # the server was gone before our goodbye: nothing to report
        raise TopError(f"cannot connect to {url}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """The root cause of a failed connect, e.g. "Connection refused"."""
    # trio wraps one OSError per address tried: the first says why.
    while True:
        if isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        elif exc.__cause__ is not None:
            exc = exc.__cause__
        else:
            break
    if isinstance(exc, OSError):
        # trio prefixes the address to strerror; errno alone says it (getaddrinfo's
        # negative codes have no errno text: their strerror is plain).
        if exc.errno is not None and exc.errno > 0:
            return os.strerror(exc.errno)
        if exc.strerror:
            return exc.strerror
    return str(exc) or type(exc).__name__


async def _next(ws: WebSocketConnection) -> str | None:
    """The next snapshot document, or None once the server said goodbye."""
    from trio_websocket import ConnectionClosed

    try:
        message = await ws.get_message()
    except ConnectionClosed as exc:
        code = exc.reason.code if exc.reason is not None else None
        if code in _GOODBYE_CODES:
            return None
        raise TopError(f"lost the connection to the server ({exc.reason})") from None
    return message if isinstance(message, str) else message.decode()


async def _print_json(ws: WebSocketConnection, once: bool) -> int:
    while (document := await _next(ws)) is not None:
        print(document, flush=True)
        if once:
            break
    return EXIT_OK


async def _show(ws: WebSocketConnection, once: bool) -> int:
    import trio
    from rich.console import Console
    from rich.live import Live

    from trio_gitaly.clients.top_view import render
    from trio_gitaly.tree_snapshot import decode

    console = Console(highlight=False)
    if once or not console.is_terminal:
        document = await _next(ws)
        if document is not None:
            size = console.size
            console.print(render(decode(document), size.width, size.height))
        return EXIT_OK
    stopped = False
    with _keys() as stdin, Live(console=console, screen=True, auto_refresh=False) as live:
        async with trio.open_nursery() as nursery:
            if stdin is not None:
                nursery.start_soon(_quit_on_q, stdin, nursery.cancel_scope)
            while (document := await _next(ws)) is not None:
                size = console.size
                live.update(render(decode(document), size.width, size.height), refresh=True)
            stopped = True
            nursery.cancel_scope.cancel()
    if stopped:
        print("trio-gitaly top: the server stopped", file=sys.stderr)
    return EXIT_OK


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """stdin in cbreak mode (keys arrive one by one, Ctrl-C still works), restored after;
    None when stdin is not a terminal."""
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if fd < 0 or not os.isatty(fd):
        yield None
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _quit_on_q(fd: int, scope: trio.CancelScope) -> None:
    import trio

    # A thread, not trio's FdStream: making stdin non-blocking would make it so for the
    # terminal's stdout too (they usually share one open file), and rich writes blocking.
    while True:
        key = await trio.to_thread.run_sync(os.read, fd, 1, abandon_on_cancel=True)
        if not key or key in (b"q", b"Q"):
            scope.cancel()
            return

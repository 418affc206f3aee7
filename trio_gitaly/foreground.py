"""The process boundary: run the tree in the foreground, tell the operator where it
listens, and turn how it ended into the process's exit code."""

from __future__ import annotations

import functools
import logging
import sys

import trio
from rich.console import Console
from rich.table import Table

from trio_gitaly import __version__
from trio_gitaly.config import Config, log_format
from trio_gitaly.log import configure as configure_logging
from trio_gitaly.malloc import tune_for_streaming
from trio_gitaly.nursery_tree import RunningServer, StartupError, serve

LOG = logging.getLogger("trio_gitaly.server")


def run_server(cfg: Config) -> int:
    """Run the server in the foreground until it stops; return the process exit code.

    0 after a graceful stop; 1 after a forced stop, a start-up failure (one line on
    stderr saying why) or a crashed node (logged with its traceback).
    """
    configure_logging(format=log_format(cfg.logging), level=cfg.logging.level)
    tune_for_streaming()
    try:
        return trio.run(_main, cfg)
    except KeyboardInterrupt:
        return 1
    except BaseException as exc:  # the process boundary: log it, then exit 1
        LOG.error("unclean trio-gitaly shutdown", exc_info=exc)
        print(f"trio-gitaly: unclean shutdown: {_first_error(exc)}", file=sys.stderr)
        return 1


async def _main(cfg: Config) -> int:
    try:
        async with trio.open_nursery() as nursery:
            running: RunningServer = await nursery.start(
                functools.partial(serve, cfg, handle_signals=True)
            )
            _announce(running)
    except BaseExceptionGroup as group:
        startup, _ = group.split(StartupError)
        if startup is None:
            raise
        print(f"trio-gitaly: {_first_error(startup)}", file=sys.stderr)
        return 1
    return running.exit_code


def _first_error(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _announce(running: RunningServer) -> None:
    """Tell the person who started the server where it listens (stdout, not the log)."""
    table = Table(title=f"trio-gitaly {__version__} is serving", show_header=False, box=None)
    for kind, addresses in running.addresses.items():
        for address in addresses:
            table.add_row(f"[bold]{kind}[/bold]", address)
    Console(highlight=False).print(table)

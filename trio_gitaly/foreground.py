"""The process boundary: run the tree in the foreground, tell the operator where it
listens, and turn how it ended into the process's exit code.

Also the process's side of graceful restarts (upgrade.py): what a predecessor handed
over comes from the environment, and once the tree is ready the pid file is written and
the predecessor told, in that order, so that the pid file names the serving process.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Sequence

import trio
from rich.console import Console
from rich.table import Table

from trio_gitaly import __version__
from trio_gitaly.config import Config, log_format
from trio_gitaly.log import configure as configure_logging
from trio_gitaly.malloc import tune_for_streaming
from trio_gitaly.nursery_tree import RunningServer, StartupError, serve
from trio_gitaly.pidfile import remove_pid_file, write_pid_file
from trio_gitaly.upgrade import Handover, HandoverError

LOG = logging.getLogger("trio_gitaly.server")


def run_server(cfg: Config, *, pid_file: str = "") -> int:
    """Run the server in the foreground until it stops; return the process exit code.

    0 after a graceful stop (a graceful restart's old process included); 1 after a
    forced stop, a start-up failure (one line on stderr saying why) or a crashed node
    (logged with its traceback). `pid_file`: where to write our pid once ready ("" for
    nowhere); removed at a plain stop if it still names us.
    """
    configure_logging(format=log_format(cfg.logging), level=cfg.logging.level)
    tune_for_streaming()
    try:
        handover = Handover.from_environ(restart_argv(), os.environ)
    except HandoverError as exc:
        print(f"trio-gitaly: {exc}", file=sys.stderr)
        return 1
    try:
        return trio.run(_main, cfg, handover, pid_file)
    except KeyboardInterrupt:
        return 1
    except BaseException as exc:  # the process boundary: log it, then exit 1
        LOG.error("unclean trio-gitaly shutdown", exc_info=exc)
        print(f"trio-gitaly: unclean shutdown: {_first_error(exc)}", file=sys.stderr)
        return 1


def restart_argv() -> Sequence[str]:
    """How a successor is started: this interpreter with our exact command line.

    `sys.orig_argv` keeps interpreter options and `-m trio_gitaly` or the script path,
    so the successor is started the way we were.
    """
    return [sys.executable, *sys.orig_argv[1:]]


async def _main(cfg: Config, handover: Handover, pid_file: str) -> int:
    try:
        async with trio.open_nursery() as nursery:
            running: RunningServer = await nursery.start(
                functools.partial(serve, cfg, handle_signals=True, handover=handover)
            )
            if pid_file:
                _write_pid_file(pid_file)
            handover.signal_ready()
            _announce(running)
    except BaseExceptionGroup as group:
        startup, _ = group.split(StartupError)
        if startup is None:
            raise
        print(f"trio-gitaly: {_first_error(startup)}", file=sys.stderr)
        return 1
    finally:
        # After a handover the file names the successor, which removes it when it stops.
        if pid_file and not handover.handed_over:
            remove_pid_file(pid_file)
    return running.exit_code


def _write_pid_file(path: str) -> None:
    try:
        write_pid_file(path)
    except OSError as exc:
        # As tableflip's Ready: a server its supervisor cannot find must not serve.
        raise StartupError(f"cannot write pid file {path!r}: {exc.strerror or exc}") from None


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

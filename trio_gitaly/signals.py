"""The signals node: SIGTERM/SIGINT start a graceful stop; a second one stops at once.
SIGHUP asks for a graceful restart (upgrade.py)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import trio

LOG = logging.getLogger("trio_gitaly.signals")


async def watch_signals(
    graceful: Callable[[], None],
    force: Callable[[], None],
    hangup: Callable[[], None] | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call `graceful` on the first SIGTERM or SIGINT, `force` on the next one, and
    `hangup` on every SIGHUP (without it, SIGHUP keeps its default action).

    Reports started once the handlers are installed, so no signal that arrives after
    start-up is lost. Cancellation: uninstalls the handlers (trio re-delivers pending
    signals to the default handlers).
    """
    trapped = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGHUP] if hangup else [])
    with trio.open_signal_receiver(*trapped) as signals:
        task_status.started()
        received = 0
        async for signum in signals:
            if signum == signal.SIGHUP and hangup is not None:
                hangup()
                continue
            received += 1
            name = signal.Signals(signum).name
            if received == 1:
                LOG.info("[shutdown] stopping trio-gitaly", extra={"fields": {"signal": name}})
                graceful()
            else:
                LOG.warning("force shutdown", extra={"fields": {"signal": name}})
                force()
                return

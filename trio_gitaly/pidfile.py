"""The pid file: which process serves, for supervisors that follow graceful restarts.

After a restart the serving process is the successor, not the process the supervisor
started, so supervisors (systemd's PIDFile=, gitaly-wrapper) follow this file. It is
written by whichever process becomes ready, before that process tells its predecessor
to stop, and replaced atomically: a reader sees the old pid or the new one, never a
half-written file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Final

from trio_gitaly.storage.durable import replace_file

LOG = logging.getLogger("trio_gitaly.server")

#: Gitaly's variable (honoured by gitaly-wrapper too); `--pid-file` and the `pid_file`
#: config key name the same file.
PID_FILE_ENV: Final = "GITALY_PID_FILE"


def pid_file_path(flag: str | None, configured: str, environ: Mapping[str, str]) -> str:
    """Where the pid file goes: `--pid-file`, else GITALY_PID_FILE, else the config; "" for none.

    The command line wins over the environment, which wins over the file: each is more
    specific to this one invocation than the next.
    """
    return flag or environ.get(PID_FILE_ENV, "") or configured


def write_pid_file(path: str, pid: int | None = None) -> None:
    """Atomically replace `path` with our pid (default: this process's).

    Raises:
        OSError: the temporary file could not be written or renamed into place.
    """
    # A pid file is meant to be read by others (supervisors, scripts).
    replace_file(path, f"{os.getpid() if pid is None else pid}\n".encode(), mode=0o644)


def read_pid_file(path: str) -> int | None:
    """The pid `path` names, or None if it is missing or does not hold a pid."""
    try:
        with open(path, encoding="ascii") as pid_file:
            return int(pid_file.read().strip())
    except (OSError, ValueError):
        return None


def remove_pid_file(path: str) -> None:
    """Remove `path` if it still names this process (a successor may have replaced it).

    Failures are logged: a stale pid file must not turn a clean stop into an error.
    """
    if read_pid_file(path) != os.getpid():
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        LOG.error("could not remove pid file", extra={"fields": {"path": path, "error": str(exc)}})

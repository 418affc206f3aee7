"""The upgrade tests' parent for `trio-gitaly run`: a subreaper, as gitaly-wrapper is one.

Usage: supervisor.py REPORT COMMAND...

Runs COMMAND. The process a graceful restart leaves behind exits while its successor
lives on; that successor is re-parented here (PR_SET_CHILD_SUBREAPER), so every server
of the chain is our child when it exits and its exit status can be reported: one line
"<pid> <exit code>" per reaped process, appended to REPORT. Exits once no child is left.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> None:
    report, command = sys.argv[1], sys.argv[2:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    os.posix_spawn(command[0], command, os.environ)
    with open(report, "a", buffering=1, encoding="ascii") as out:
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                return
            out.write(f"{pid} {os.waitstatus_to_exitcode(status)}\n")


if __name__ == "__main__":
    main()

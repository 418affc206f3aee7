"""GIT_SSH_COMMAND for the upgrade tests: `trio-gitaly ssh`, its output to git throttled.

A clone through it stays in flight for seconds, long enough to restart the server under
it. The server address comes from SLOW_SSH_ADDRESS, the rate from SLOW_SSH_BYTES_PER_S.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

CHUNK_BYTES = 16 * 1024


def main() -> None:
    rate = float(os.environ["SLOW_SSH_BYTES_PER_S"])
    command = [sys.executable, "-m", "trio_gitaly", "ssh"]
    command += ["--address", os.environ["SLOW_SSH_ADDRESS"], *sys.argv[1:]]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as ssh:
        assert ssh.stdout is not None
        out = sys.stdout.buffer
        while chunk := ssh.stdout.read1(CHUNK_BYTES):
            out.write(chunk)
            out.flush()
            time.sleep(len(chunk) / rate)
    sys.exit(ssh.returncode)


if __name__ == "__main__":
    main()

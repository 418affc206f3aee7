"""Where the embedded default configuration serves: shared by the server and its clients.

A module without imports, so that `trio-gitaly ssh` (started for every git operation)
knows the default address without loading the configuration machinery.
"""

from __future__ import annotations

from typing import Final

# Used when no config file is given: a self-contained data directory under the CWD.
EMBEDDED_DATA_DIR: Final = "trio-gitaly-data"
EMBEDDED_LISTEN_ADDR: Final = "127.0.0.1:8075"
EMBEDDED_PROMETHEUS_LISTEN_ADDR: Final = "127.0.0.1:9236"
EMBEDDED_GATEWAY_LISTEN_ADDR: Final = "127.0.0.1:8076"

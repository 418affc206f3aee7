"""What every git process shares: its environment and how its process group is killed.

Both `version.detect` (which runs git before a `CommandFactory` can exist) and the factory
use these, so the rules live once.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import invalid_argument

if TYPE_CHECKING:
    from collections.abc import Mapping

    import trio

#: Set on every git process, whatever our own environment says (Gitaly's shared env).
#: The three config variables stop git reading any global or system config, so behaviour
#: depends only on the `-c` options we pass and the repository's own config; the prompt
#: switch makes git fail instead of waiting for a password on a terminal nobody watches.
FIXED_ENVIRONMENT: Final[Mapping[str, str]] = MappingProxyType(
    {
        "LANG": "en_US.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_SYSTEM": "/dev/null",
        "XDG_CONFIG_HOME": "/dev/null",
    }
)

#: The only variables copied from our own environment (Gitaly's allowlist). Everything
#: else (GIT_DIR, GIT_CONFIG_PARAMETERS, GIT_CONFIG_COUNT, ...) would let whoever started
#: the server change what git does behind the factory's back.
INHERITED_ENVIRONMENT: Final = frozenset(
    {
        "HOME",
        "PATH",
        "LD_LIBRARY_PATH",
        "TZ",
        "GIT_TRACE",
        "GIT_TRACE_PACK_ACCESS",
        "GIT_TRACE_PACKET",
        "GIT_TRACE_PERFORMANCE",
        "GIT_TRACE_SETUP",
        "GIT_EXEC_PATH",
        "GIT_DEFAULT_REF_FORMAT",
        "all_proxy",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
    }
)

_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def base_environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a git process before per-command additions.

    Args:
        source: the environment to inherit from; `os.environ` when None.
    """
    source = os.environ if source is None else source
    env = {name: source[name] for name in INHERITED_ENVIRONMENT if name in source}
    env.update(FIXED_ENVIRONMENT)
    return env


def with_extra_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """`base` plus a caller's per-command variables (e.g. GIT_OBJECT_DIRECTORY).

    Raises:
        GitalyError: INVALID_ARGUMENT for a malformed name, a NUL in a value, or an attempt
            to override one of the `FIXED_ENVIRONMENT` variables.
    """
    env = dict(base)
    for name, value in extra.items():
        if not _ENV_NAME_RE.fullmatch(name):
            raise invalid_argument(f"invalid environment variable name {name!r}")
        if name in FIXED_ENVIRONMENT:
            raise invalid_argument(f"environment variable {name!r} cannot be overridden")
        if "\0" in value:
            raise invalid_argument(f"environment variable {name!r} contains nul")
        env[name] = value
    return env


def kill_process_group(pgid: int) -> None:
    """SIGKILL every process in group `pgid`; a group that is already gone is fine.

    Every git process is started in its own session, so its pid is its group id, and the
    group holds git's children too (pack-objects under upload-pack, transport helpers).
    Killing only git would orphan them with our pipes still open.
    """
    # killpg(0) / killpg(1) would signal our own group or every process we may signal:
    # refuse rather than trust that a pid can never be that small.
    if pgid <= 1:
        raise ValueError(f"refusing to kill process group {pgid}")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


async def deliver_cancel(process: trio.Process) -> None:
    """`deliver_cancel` for `trio.run_process`: kill the whole group at once.

    trio's default sends SIGTERM to the leader only and waits 5 s; git's children would
    survive it and keep our pipes open.
    """
    kill_process_group(process.pid)

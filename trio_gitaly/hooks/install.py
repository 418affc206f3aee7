"""The hooks directory git's `core.hooksPath` points at, inside the runtime directory.

One launcher script runs the entry point with this server's Python; each hook name is a
symlink to it, and the entry point tells the hooks apart by the name it was run as
(Gitaly's gitaly-hooks layout). It lives and dies with the runtime directory.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from typing import Final

from trio_gitaly.hooks.payload import (
    HOOK_NAMES,
    PAYLOAD_ENV,
    Hook,
    HooksPayload,
    UserDetails,
)

HOOKS_DIR: Final = "hooks"
LAUNCHER: Final = "trio-gitaly-hooks"
_LAUNCHER_MODE: Final = 0o755


def install_hooks(runtime_dir: str, python: str = sys.executable) -> str:
    """Create `<runtime_dir>/hooks` with one entry per hook; return its path.

    Raises:
        OSError: the directory or its entries cannot be written.
    """
    launcher = os.path.join(runtime_dir, LAUNCHER)
    # `exec -a` is not POSIX sh; the hook name is passed as the first argument instead.
    script = f'#!/bin/sh\nexec {shlex.quote(python)} -m trio_gitaly.hooks "$(basename "$0")" "$@"\n'
    with open(launcher, "w", encoding="utf-8") as f:
        f.write(script)
    os.chmod(launcher, _LAUNCHER_MODE)
    hooks_dir = os.path.join(runtime_dir, HOOKS_DIR)
    os.mkdir(hooks_dir, 0o700)
    for name in HOOK_NAMES:
        os.symlink(os.path.join("..", LAUNCHER), os.path.join(hooks_dir, name))
    return hooks_dir


@dataclass(frozen=True)
class HookSetup:
    """What a git process that runs hooks needs: where they are and how to call back."""

    hooks_dir: str
    runtime_dir: str
    internal_socket: str
    token: str = ""

    def git_options(
        self,
        *,
        repository_json: str,
        object_format: str,
        requested: Hook,
        user: UserDetails | None,
    ) -> tuple[list[tuple[str, str]], dict[str, str]]:
        """The `-c` options and environment that make git run our hooks.

        Args:
            repository_json: the Repository message as protojson text.
            object_format: "sha1" or "sha256".
            requested: the hooks that should call the server.
            user: the pushing user, when known.
        """
        payload = HooksPayload(
            repository=repository_json,
            requested_hooks=requested,
            object_format=object_format,
            runtime_dir=self.runtime_dir,
            internal_socket=self.internal_socket,
            internal_socket_token=self.token,
            user_details=user,
        )
        return [("core.hooksPath", self.hooks_dir)], {PAYLOAD_ENV: payload.encode()}

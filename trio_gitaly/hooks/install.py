"""The hooks directory git's `core.hooksPath` points at, inside the runtime directory.

One launcher runs the entry point with this server's Python; each hook name is a
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

# A file that is both a shell script and a Python program: the shell line re-executes it
# with the server's Python, so no shebang length limit applies. `-I -S` skip site
# processing (half of Python's start-up, paid several times per push), so the server's
# import path is written in instead.
_LAUNCHER_TEMPLATE: Final = (
    "#!/bin/sh\n"
    "''''exec {python} -I -S \"$0\" \"$@\" #'''\n"
    "import os\n"
    "import sys\n"
    "\n"
    "sys.path[:0] = {path!r}\n"
    "from trio_gitaly.hooks.entry import main\n"
    "\n"
    "sys.exit(main([os.path.basename(sys.argv[0]), *sys.argv[1:]]))\n"
)


def install_hooks(runtime_dir: str, python: str = sys.executable) -> str:
    """Create `<runtime_dir>/hooks` with one entry per hook; return its path.

    Every entry is a symlink to one launcher, which runs the entry point with this
    server's Python and import path, so hooks run the server's own code.

    Raises:
        OSError: the directory or its entries cannot be written.
    """
    launcher = os.path.join(runtime_dir, LAUNCHER)
    with open(launcher, "w", encoding="utf-8") as f:
        f.write(_LAUNCHER_TEMPLATE.format(python=shlex.quote(python), path=_import_path()))
    os.chmod(launcher, _LAUNCHER_MODE)
    hooks_dir = os.path.join(runtime_dir, HOOKS_DIR)
    os.mkdir(hooks_dir, 0o700)
    for name in HOOK_NAMES:
        os.symlink(os.path.join("..", LAUNCHER), os.path.join(hooks_dir, name))
    return hooks_dir


def _import_path() -> list[str]:
    # The directory holding this package first: an editable install finds it through a
    # site hook, which -S leaves out. Then the server's own path, minus its working dir.
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return [package_root, *(p for p in sys.path if p and os.path.isdir(p))]


@dataclass(frozen=True)
class HookSetup:
    """What a git process that runs hooks needs: where they are and how to call back."""

    hooks_dir: str
    runtime_dir: str
    internal_socket: str
    token: str = ""
    # What decides which hooks a push needs (see transport/push_hooks.py).
    custom_hooks_dir: str = ""
    gitlab_configured: bool = False

    def hooks_dir_for(self, requested: Hook) -> str:
        """A hooks directory holding only the `requested` hooks, made on first use.

        git runs no hook it cannot find: a hook with nothing to do costs no process.
        Synchronous on purpose: trio runs one task at a time, so two pushes cannot race
        to create the same directory.
        """
        names = [name for name in HOOK_NAMES if (hook := Hook.by_name(name)) and requested & hook]
        if len(names) == len(HOOK_NAMES):
            return self.hooks_dir
        directory = os.path.join(self.runtime_dir, f"{HOOKS_DIR}-{int(requested)}")
        if not os.path.isdir(directory):
            os.mkdir(directory, 0o700)
            for name in names:
                os.symlink(os.path.join("..", LAUNCHER), os.path.join(directory, name))
        return directory

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
        hooks_path = self.hooks_dir_for(requested)
        return [("core.hooksPath", hooks_path)], {PAYLOAD_ENV: payload.encode()}

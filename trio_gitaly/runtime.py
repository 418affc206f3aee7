"""The per-process runtime directory: private scratch space for sockets and hook shims.

Layout (all 0700, owned by us):

    <parent>/gitaly-<pid>/            our runtime directory
    <parent>/gitaly-<pid>/sock.d/     unix sockets; `intern` is the internal gRPC socket

`<parent>` is the configured `runtime_dir`, or a fresh `trio-gitaly-*` temp directory.
Naming the directory after our pid lets a later start tell a crashed process's leftovers
(pid dead) from a sibling's live directory (pid alive), and prune only the former.

Differences from Gitaly, on purpose: Gitaly uses the temp directory itself (not a
`gitaly-<pid>` child) when `runtime_dir` is unset, and fails to start when a directory with
its own pid already exists; we always use the pid-named child, and remove a same-pid leftover
first (it can only be ours from an earlier incarnation, e.g. pid 1 in a container).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterator

LOGGER: Final = logging.getLogger("trio_gitaly.runtime")

SOCKET_DIR: Final = "sock.d"
INTERNAL_SOCKET: Final = "intern"
TEMP_PREFIX: Final = "trio-gitaly-"

_DIR_MODE: Final = 0o700
# ASCII digits only: int() would also take "+5", " 5", "5_0" and non-ASCII digits.
_PROCESS_DIR: Final = re.compile(r"gitaly-([0-9]+)")
# pid_t is a signed 32-bit int; a larger number cannot name a process, and os.kill would
# raise OverflowError on it.
_MAX_PID: Final = 2**31 - 1
# Errors bind(2) gives for a too-long unix socket path. CPython checks the length itself and
# raises OSError("AF_UNIX path too long") with no errno, hence None.
_PATH_TOO_LONG_ERRNOS: Final = (None, errno.EINVAL, errno.ENAMETOOLONG)


class RuntimeDirError(Exception):
    """The runtime directory could not be set up; the server cannot start."""


@dataclass(frozen=True)
class RuntimeDir:
    """A ready runtime directory: `path`, and where the internal socket is to be bound."""

    path: str
    internal_socket: str


@contextmanager
def runtime_directory(runtime_dir: str) -> Iterator[RuntimeDir]:
    """Create this process's runtime directory; remove it on exit.

    Args:
        runtime_dir: the configured parent directory, which must exist; "" means a fresh
            temporary parent, removed on exit as well.

    Before creating ours, leftover `gitaly-<pid>` siblings of dead processes are pruned.
    Removal on exit happens whether the body returns or raises; failures are logged.

    Raises:
        RuntimeDirError: the parent cannot be listed, a directory cannot be created, or a
            unix socket cannot be bound inside it (typically: path too long).
    """
    created_parent = not runtime_dir
    if created_parent:
        try:
            parent = tempfile.mkdtemp(prefix=TEMP_PREFIX)
        except OSError as exc:
            raise RuntimeDirError(f"creating temporary runtime directory: {exc}") from exc
    else:
        parent = os.path.abspath(runtime_dir)
    own = os.path.join(parent, f"gitaly-{os.getpid()}")
    try:
        yield _set_up(parent, own)
    finally:
        _remove_logged(parent if created_parent else own)


def prune_dead_process_dirs(parent: str) -> None:
    """Remove `gitaly-<pid>` directories in `parent` whose process no longer exists.

    Other entries are kept: regular files and symlinks are ignored, unexpected directory
    names and per-entry failures are logged. A pid that exists but belongs to another user
    (EPERM) counts as dead: it was reused, so it cannot be a trio-gitaly of ours.

    Raises:
        OSError: `parent` cannot be listed.
    """
    with os.scandir(parent) as it:
        entries = list(it)
    for entry in entries:
        try:
            _prune_entry(entry)
        except (OSError, _UnexpectedEntryError) as exc:
            LOGGER.error("could not prune entry", extra=_fields(path=entry.path, error=str(exc)))


class _UnexpectedEntryError(Exception):
    pass


def _prune_entry(entry: os.DirEntry[str]) -> None:
    # follow_symlinks=False: a symlink to a directory must never lead rmtree elsewhere.
    if not entry.is_dir(follow_symlinks=False):
        LOGGER.info(
            "ignoring file found in gitaly process directory", extra=_fields(path=entry.path)
        )
        return
    match = _PROCESS_DIR.fullmatch(entry.name)
    if match is None or int(match[1]) > _MAX_PID:
        raise _UnexpectedEntryError(
            f'gitaly process directory contains an unexpected directory: "{entry.name}"'
        )
    pid = int(match[1])
    if pid == 0:
        # Left by a run that failed before it knew its pid; nobody can own it.
        shutil.rmtree(entry.path)
        LOGGER.info("removed gitaly directory with no pid", extra=_fields(path=entry.path))
        return
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        shutil.rmtree(entry.path)
        LOGGER.info("removed leftover gitaly process directory", extra=_fields(path=entry.path))
    # No exception: the process is alive and may be a running sibling; keep its directory.


def _set_up(parent: str, own: str) -> RuntimeDir:
    try:
        prune_dead_process_dirs(parent)
    except OSError as exc:
        raise RuntimeDirError(f"prune runtime directories: {exc}") from exc

    sock_dir = os.path.join(own, SOCKET_DIR)
    try:
        if os.path.lexists(own):
            # Same pid as ours, so its owner is dead: a previous incarnation of this process.
            if os.path.isdir(own) and not os.path.islink(own):
                shutil.rmtree(own)
            else:
                os.unlink(own)
            LOGGER.info("removed old runtime directory", extra=_fields(path=own))
        for directory in (own, sock_dir):
            os.mkdir(directory, _DIR_MODE)
            # mkdir's mode is filtered by the umask; the mode is a security property here.
            os.chmod(directory, _DIR_MODE)
    except OSError as exc:
        raise RuntimeDirError(f"creating runtime directory: {exc}") from exc

    _try_socket(sock_dir)
    return RuntimeDir(path=own, internal_socket=os.path.join(sock_dir, INTERNAL_SOCKET))


def _try_socket(sock_dir: str) -> None:
    # Bind a real socket now so a too-long path fails at startup, not when the internal
    # listener or a hook's sidechannel first needs one. "tsocket" is at least as long as
    # every socket name we create in sock.d.
    path = os.path.join(sock_dir, "tsocket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
    except OSError as exc:
        if exc.errno in _PATH_TOO_LONG_ERRNOS:
            raise RuntimeDirError(
                "your socket path is likely too long, please change the runtime directory"
                f" ({len(os.fsencode(path))} bytes: {path})"
            ) from exc
        raise RuntimeDirError(f"socket could not be created in {sock_dir}: {exc}") from exc
    finally:
        sock.close()
        with suppress(FileNotFoundError):
            os.unlink(path)


def _remove_logged(path: str) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        LOGGER.error("could not remove runtime directory", extra=_fields(path=path, error=str(exc)))


def _fields(**fields: Any) -> dict[str, Any]:
    # The project's JSON log formatter reads structured fields from `record.fields`.
    return {"fields": fields}

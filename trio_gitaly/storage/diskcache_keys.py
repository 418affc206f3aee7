"""The disk cache's keys and the state files behind them: generations and leases.

Per storage, for a repository at `<relative_path>`:

    +gitaly/state/<relative_path>/latest    the repository's generation (a UUID)
    +gitaly/state/<relative_path>/pending/  one file per mutation in progress (a lease)

Why an answer is never served stale: a mutation's lease deletes `latest` and creates a
pending file before the repository changes, and writes a new generation after it
changed. While a pending file exists every lookup bypasses the cache; an answer computed
under a generation read before or during the mutation is filed under that generation,
which the lease's end replaces. A pending file older than `STALE_AGE_S` (a server that
died mid-mutation) no longer blocks lookups: it is deleted and, unlike Gitaly, the
generation is replaced too, because answers filed during that mutation may be stale.

All of it is a few small files, handled inline (blocking, briefly). Directories the
walkers remove while empty (workers/diskcache_walkers.py) can vanish between our
`makedirs` and the file created in them; those steps are retried once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from trio_gitaly import __version__
from trio_gitaly.storage.locator import INTERNAL_DIR, RepositoryLike

LOG = logging.getLogger("trio_gitaly.diskcache")

#: Age (mtime) after which a pending lease no longer blocks lookups, and after which the
#: walkers delete cache entries and state files.
STALE_AGE_S: Final = 60 * 60.0
CACHE_DIR: Final = f"{INTERNAL_DIR}/cache"
STATE_DIR: Final = f"{INTERNAL_DIR}/state"
DIR_MODE: Final = 0o700

T = TypeVar("T")


class PendingLeaseError(Exception):
    """A mutation of the repository is in progress: the cache must not be used."""

    def __init__(self) -> None:
        super().__init__(
            "one or more cache generations are pending transition for the current repository"
        )


class MissingLeaseFileError(Exception):
    """A lease ended whose pending file someone else removed."""

    def __init__(self) -> None:
        super().__init__("lease file unexpectedly missing")


@dataclass(frozen=True)
class CacheKey:
    """What an answer is cached under: the repository, the full method, the request."""

    repository: RepositoryLike
    method: str  # "/gitaly.SmartHTTPService/InfoRefsUploadPack"
    request: bytes  # the serialized request message


def compose_key(generation: str, method: str, request: bytes, *, feature_flags: str = "") -> str:
    """The hex SHA-256 of Gitaly's five length-prefixed parts.

    Each part is its byte length as 8 lowercase hex digits, then its bytes, so that no
    two different part lists hash the same concatenation. `feature_flags` is the sorted
    "name:value" pairs joined by spaces; we have no feature flags, so it is "".
    """
    digest = hashlib.sha256()
    parts = (__version__.encode(), method.encode(), generation.encode(), request)
    for part in (*parts, feature_flags.encode()):
        digest.update(b"%08x" % len(part) + part)
    return digest.hexdigest()


def cache_dir(storage_path: str) -> str:
    """`<storage>/+gitaly/cache`."""
    return posixpath.join(storage_path, CACHE_DIR)


def state_dir(storage_path: str) -> str:
    """`<storage>/+gitaly/state`."""
    return posixpath.join(storage_path, STATE_DIR)


def current_generation(state: str) -> str:
    """The generation in `<state>/latest`, created if there is none."""
    try:
        with open(posixpath.join(state, "latest"), encoding="utf-8") as latest:
            return latest.read()
    except FileNotFoundError:
        return new_generation(state)


def new_generation(state: str) -> str:
    """Write a new generation to `<state>/latest` (atomically) and return it."""
    generation = str(uuid.uuid4())
    replace_file(posixpath.join(state, "latest"), generation.encode())
    LOG.info("diskcache state change", extra={"fields": {"diskcache": generation}})
    return generation


def pending_leases(state: str) -> bool:
    """Whether a live pending lease exists in `<state>/pending`.

    Stale ones are removed on the way, each replacing the generation (see above).
    """
    pending = posixpath.join(state, "pending")
    try:
        names = os.listdir(pending)
    except FileNotFoundError:
        return False
    live = False
    for name in names:
        path = posixpath.join(pending, name)
        try:
            age_s = time.time() - os.stat(path).st_mtime
        except FileNotFoundError:
            continue  # its lease just ended
        if age_s <= STALE_AGE_S:
            live = True
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        new_generation(state)
    return live


@dataclass(eq=False)
class Lease:
    """A mutation's hold on a repository's cache: `begin` before it, `end` after it."""

    _state: str
    # Counts an error by Gitaly's name ("ErrMissingLeaseFile").
    _count_error: Callable[[str], None]
    _pending: str | None = None

    def begin(self) -> None:
        """Bypass the cache from now on: drop the generation, add a pending file.

        Raises:
            OSError: the state directory could not be changed; `end` still replaces the
                generation.
        """
        with contextlib.suppress(FileNotFoundError):
            os.unlink(posixpath.join(self._state, "latest"))
        pending = posixpath.join(self._state, "pending")
        fd, self._pending = retry_vanished_dir(
            pending, lambda: tempfile.mkstemp(dir=pending, prefix="lease-")
        )
        os.close(fd)

    def end(self) -> None:
        """Start a new generation, then remove the pending file.

        Raises:
            OSError: the generation could not be written (the pending file stays, so the
                cache is bypassed until it is stale).
            MissingLeaseFileError: the pending file was gone.
        """
        new_generation(self._state)
        if self._pending is None:
            return
        try:
            os.unlink(self._pending)
        except FileNotFoundError:
            self._count_error("ErrMissingLeaseFile")
            raise MissingLeaseFileError() from None


def replace_file(path: str, content: bytes) -> None:
    """Write `path` atomically (temporary file + rename), creating its directory.

    Not fsynced: the cache is emptied at every start, so a generation lost in a crash
    has no entries to be confused with.
    """
    directory = posixpath.dirname(path)
    fd, temporary = retry_vanished_dir(
        directory, lambda: tempfile.mkstemp(dir=directory, prefix="latest-")
    )
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(content)
        os.rename(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def retry_vanished_dir(directory: str, create: Callable[[], T]) -> T:
    """`create` a file in `directory` (made if missing), again if a walker removed it."""
    for attempt in range(2):
        os.makedirs(directory, DIR_MODE, exist_ok=True)
        try:
            return create()
        except FileNotFoundError:
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover

"""Which git binary the server runs, and whether it is new enough."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Final

import trio

from trio_gitaly.git.process import base_environment, deliver_cancel


@dataclass(frozen=True, order=True)
class GitVersion:
    """A git release, ordered by (major, minor, patch).

    Suffixes (`.rc1`, `.gl2`, `.windows.1`, `(Apple Git-155)`) are kept in `raw` only.
    A release candidate compares equal to its release: what we need from 2.36
    (`cat-file --batch-command`, `core.fsync`) was already in 2.36.0-rc0.
    """

    major: int
    minor: int
    patch: int
    raw: str = field(default="", compare=False)

    def __str__(self) -> str:
        return self.raw or f"{self.major}.{self.minor}.{self.patch}"


#: `cat-file --batch-command` and `core.fsync`/`core.fsyncMethod` appeared in 2.36.
MINIMUM_VERSION: Final = GitVersion(2, 36, 0)

#: How long `git version` may take before we call the binary broken.
DETECT_TIMEOUT_S: Final = 10.0

# "git version 2.39.5", "2.47.1.gl1", "2.36.0.rc1", "2.39.5.windows.1", "2.40.GIT" (a
# build that could not describe itself; Gitaly reads GIT as 0), "1.8.3.1", and Apple's
# "2.39.5 (Apple Git-154)".
_VERSION_RE: Final = re.compile(
    r"git version (?P<raw>(\d+)\.(\d+)\.(\d+|GIT)(?:[.-][0-9A-Za-z]+)*)(?: \([^()\n]*\))?"
)
# Enough of a bad binary's output to recognise it in an error message.
_MAX_QUOTED_OUTPUT_CHARS: Final = 200


def parse_version(output: str) -> GitVersion:
    """Parse the output of `git version`.

    Raises:
        ValueError: `output` is not "git version X.Y.Z[suffixes]".
    """
    match = _VERSION_RE.fullmatch(output.strip())
    if match is None:
        raise ValueError(f"not a git version: {output[:_MAX_QUOTED_OUTPUT_CHARS]!r}")
    major, minor, patch = match.group(2, 3, 4)
    return GitVersion(int(major), int(minor), 0 if patch == "GIT" else int(patch), raw=match["raw"])


@dataclass(frozen=True)
class GitBinary:
    """A git executable that passed `detect`.

    Attributes:
        path: absolute path of the executable.
        version: its version, at least `MINIMUM_VERSION`.
    """

    path: str
    version: GitVersion


class GitSetupError(Exception):
    """The configured git cannot be used; the message is one readable line."""


async def detect(bin_path: str = "", *, timeout_s: float = DETECT_TIMEOUT_S) -> GitBinary:
    """Find git, run `git version` and check it is new enough.

    Args:
        bin_path: the configured binary; an empty string means `git` on PATH.
        timeout_s: how long `git version` may run.

    Returns:
        The binary with its absolute path and version.

    Raises:
        GitSetupError: git is missing, not executable, fails or hangs when run, prints
            something that is not a version, or is older than `MINIMUM_VERSION`.

    Cancellation:
        The `git version` process group is killed with SIGKILL and reaped before
        `Cancelled` propagates.
    """
    # Path lookups stat the filesystem; keep them off the event loop.
    path = await trio.to_thread.run_sync(_resolve, bin_path)
    try:
        with trio.fail_after(timeout_s):
            result = await trio.run_process(
                [path, "version"],
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=base_environment(),
                start_new_session=True,
                deliver_cancel=deliver_cancel,
            )
    except trio.TooSlowError:
        raise GitSetupError(
            f"git binary {path!r} did not answer 'git version' within {timeout_s:g} s"
        ) from None
    except OSError as exc:
        raise GitSetupError(f"git binary {path!r} failed to run: {exc.strerror}") from exc

    stdout = result.stdout.decode("utf-8", "replace")
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = stderr[0][:_MAX_QUOTED_OUTPUT_CHARS] if stderr else "no output"
        raise GitSetupError(
            f"git binary {path!r} failed to run: 'git version' exited with status "
            f"{result.returncode}: {reason}"
        )
    try:
        version = parse_version(stdout)
    except ValueError:
        raise GitSetupError(
            f"git binary {path!r} printed an unparsable version: "
            f"{stdout.strip()[:_MAX_QUOTED_OUTPUT_CHARS]!r}"
        ) from None
    if version < MINIMUM_VERSION:
        raise GitSetupError(
            f"unsupported git version {version}: trio-gitaly needs {MINIMUM_VERSION} or newer"
        )
    return GitBinary(path=path, version=version)


def _resolve(bin_path: str) -> str:
    """The absolute path of the executable `bin_path` names (or `git` on PATH)."""
    if not bin_path:
        found = shutil.which("git")
        if found is None:
            raise GitSetupError("git binary not found: no 'git' on PATH (set git.bin_path)")
        return os.path.abspath(found)
    if os.sep not in bin_path:
        # A bare name ("git", "git-2.47") is looked up on PATH, as a shell would.
        found = shutil.which(bin_path)
        if found is None:
            raise GitSetupError(f"git binary not found: no {bin_path!r} on PATH")
        return os.path.abspath(found)
    path = os.path.abspath(bin_path)
    if not os.path.exists(path):
        raise GitSetupError(f"git binary not found: {path!r}")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise GitSetupError(f"git binary is not executable: {path!r}")
    return path

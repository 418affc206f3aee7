"""What a client may ask of git's transport commands: `-c` options and a protocol version.

Also the configuration Gitaly gives upload-pack and receive-pack on every call
(internal/git/gitcmd/command_description.go), so that a clone or push behaves the same
through either server.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Final

from trio_gitaly.errors import invalid_argument
from trio_gitaly.git.args import validate_config
from trio_gitaly.goformat import go_quote

LOG = logging.getLogger("trio_gitaly.transport")

PROTOCOL_V1: Final = "version=1"
PROTOCOL_V2: Final = "version=2"

Config = list[tuple[str, str]]

# Refs GitLab keeps for itself: hidden ones are neither advertised nor writable,
# read-only ones are advertised by upload-pack but never writable by a push.
HIDDEN_REF_PREFIXES: Final = ("refs/keep-around/", "refs/remotes/", "refs/tmp/")
READONLY_REF_PREFIXES: Final = ("refs/environments/", "refs/merge-requests/", "refs/pipelines/")


def _pack_threads() -> str:
    # log2 of the CPUs, at least 1: a clone must not take every core of the server.
    return str(max(1, (os.cpu_count() or 1).bit_length() - 1))


def _pack_config() -> Config:
    return [
        ("pack.windowMemory", "100m"),
        ("pack.writeReverseIndex", "true"),
        ("pack.threads", _pack_threads()),
    ]


def upload_pack_config() -> Config:
    """Server-side `-c` options for every upload-pack."""
    config: Config = [
        # Partial clones (--filter) and fetching any reachable object by id.
        ("uploadpack.allowFilter", "true"),
        ("uploadpack.allowAnySHA1InWant", "true"),
    ]
    config += [("uploadpack.hideRefs", prefix) for prefix in HIDDEN_REF_PREFIXES]
    return config + _pack_config()


def receive_pack_config() -> Config:
    """Server-side `-c` options for every receive-pack."""
    config: Config = [
        # An object pool's refs must not be advertised as the repository's: git appends
        # the pool's path to this command, which the "#" turns into a comment.
        ("core.alternateRefsCommand", "exit 0 #"),
        ("receive.advertisePushOptions", "true"),
        ("receive.autogc", "false"),
    ]
    hidden = (*HIDDEN_REF_PREFIXES, *READONLY_REF_PREFIXES)
    config += [("receive.hideRefs", prefix) for prefix in sorted(hidden)]
    # Pushed objects are untrusted: check them all, minus the harmless historical
    # defects Gitaly tolerates.
    config += [
        ("transfer.fsckObjects", "true"),
        ("receive.fsck.badTimezone", "ignore"),
        ("receive.fsck.missingSpaceBeforeDate", "ignore"),
        ("receive.fsck.zeroPaddedFilemode", "ignore"),
    ]
    return config + _pack_config()


def client_config(options: Sequence[str]) -> Config:
    """A request's `git_config_options` ("key=value") as `-c` pairs.

    Raises:
        GitalyError: INVALID_ARGUMENT for an entry without "=" or a malformed key.
    """
    pairs: Config = []
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise invalid_argument(f"cannot convert invalid config key: {go_quote(option)}")
        pairs.append((key, value))
    validate_config(pairs)
    return pairs


def protocol_env(git_protocol: str) -> dict[str, str]:
    """`GIT_PROTOCOL` for git, from the client's; unknown values are logged and dropped."""
    if git_protocol in (PROTOCOL_V1, PROTOCOL_V2):
        return {"GIT_PROTOCOL": git_protocol}
    if git_protocol:
        fields = {"git_protocol": git_protocol}
        LOG.warning("invalid git protocol requested", extra={"fields": fields})
    return {}

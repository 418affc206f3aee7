"""The hook entry point: `python -m trio_gitaly.hooks <hook-name> [args...]`.

git runs it (through the hooks directory's launcher) for every hook of a receive-pack,
several times per push, so the common exit paths stay cheap: a hook the payload did not
request exits 0 after decoding the payload, without loading grpc or protobuf. Only a
requested hook imports `relay`, which calls HookService over the internal socket.

Like Gitaly's gitaly-hooks, every failure of our own prints one line, "error executing
git hook", and exits 1: whatever a hook writes to stderr reaches the pushing client, so
internal details stay out of it.
"""

from __future__ import annotations

import os
import sys
from typing import Final

from trio_gitaly.hooks.payload import PAYLOAD_ENV, Hook, HooksPayload, PayloadError

ERROR_MESSAGE: Final = b"error executing git hook\n"
#: The states git passes to the reference-transaction hook, in the proto's enum order.
TRANSACTION_STATES: Final = ("prepared", "committed", "aborted")


class HookUsageError(Exception):
    """git (or a person) ran the entry point with arguments no hook takes."""


def check_arguments(hook: Hook, args: list[str]) -> None:
    """Refuse argument lists the hook cannot have been given by git (as gitaly-hooks).

    Raises:
        HookUsageError: wrong number of arguments, or an unknown transaction state.
    """
    if hook is Hook.UPDATE and len(args) != 3:
        raise HookUsageError(f"update hook expects exactly three arguments, got {args!r}")
    if hook is Hook.REFERENCE_TRANSACTION:
        if len(args) != 1:
            raise HookUsageError(f"reference-transaction hook expects one argument, got {args!r}")
        if args[0] not in TRANSACTION_STATES:
            raise HookUsageError(f"reference-transaction hook has invalid state: {args[0]!r}")
    if hook is Hook.PROC_RECEIVE and args:
        raise HookUsageError(f"proc-receive hook does not accept arguments, got {len(args)}")


def main(argv: list[str]) -> int:
    """Run hook `argv[0]` with arguments `argv[1:]`; return the process exit status.

    Exit status: 0 for a hook that was not requested; otherwise the status HookService
    reports, or 1 (with "error executing git hook" on stderr) when the hook cannot be
    served at all.
    """
    hook = Hook.by_name(argv[0]) if argv else None
    if hook is None:
        return _fail()
    try:
        payload = HooksPayload.decode(os.environ.get(PAYLOAD_ENV, ""))
    except PayloadError:
        return _fail()
    if not payload.is_requested(hook):
        return 0
    try:
        check_arguments(hook, argv[1:])
    except HookUsageError:
        return _fail()
    # Taken before we add to it: the server gets the environment git gave the hook.
    environment = environment_variables()
    # grpc's C core logs to stderr, which git relays to the pushing client.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    # Imported here: grpc and protobuf cost more than everything above together.
    from trio_gitaly.hooks.relay import HookCallError, call_hook

    try:
        return call_hook(hook, argv[1:], payload, environment)
    except HookCallError:
        return _fail()


def environment_variables() -> list[str]:
    """This process's environment as "NAME=value" strings, for HookService.

    Gitaly sends the hook's whole environment: the server reads the quarantine
    directories, push options and payload from it. Bytes that are not UTF-8 (proto
    strings must be) become U+FFFD.
    """
    return [(name + b"=" + value).decode("utf-8", "replace") for name, value in os.environb.items()]


def _fail() -> int:
    write_all(sys.stderr.fileno(), ERROR_MESSAGE)
    return 1


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to file descriptor `fd`, unbuffered (output must not wait)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]

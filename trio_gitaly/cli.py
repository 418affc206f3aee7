"""The `trio-gitaly` command: run the server, check a deployment, print the config schema.

Bad input (a config error, a missing file) is reported as one line on stderr with exit
status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING, Final, NoReturn

from trio_gitaly import __version__
from trio_gitaly.config import ConfigError, embedded_defaults, json_schema, load

if TYPE_CHECKING:
    from collections.abc import Sequence

    from trio_gitaly.config import Config

EXIT_OK: Final = 0
# argparse's own status for usage errors; config and check failures use it too.
EXIT_USAGE: Final = 2

# The oldest Git the server supports; `check` fails below it.
# TODO(lead): unify with trio_gitaly.git.version.MINIMUM_VERSION.
MINIMUM_GIT_VERSION: Final = (2, 36, 0)
GIT_PROBE_TIMEOUT_S: Final = 10.0

_GIT_VERSION_RE: Final = re.compile(r"git version (\d+)\.(\d+)(?:\.(\d+))?")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line `argv` (default: `sys.argv[1:]`) and exit with its status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.handler(args)
    except ConfigError as exc:
        print(f"trio-gitaly: config error: {exc}", file=sys.stderr)
        status = EXIT_USAGE
    sys.exit(status)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-gitaly", description="A Git storage server speaking Gitaly's gRPC protocol."
    )
    parser.add_argument("--version", action="version", version=f"trio-gitaly {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run the server")
    run.set_defaults(handler=_run)
    check = commands.add_parser("check", help="validate the config and probe git and storages")
    check.set_defaults(handler=_check)
    for command in (run, check):
        command.add_argument(
            "--config",
            metavar="PATH",
            help="TOML config file (default: built-in defaults under ./trio-gitaly-data)",
        )

    config = commands.add_parser("config", help="config file tools")
    config_commands = config.add_subparsers(title="commands", metavar="COMMAND", required=True)
    schema = config_commands.add_parser("schema", help="print the config file's JSON Schema")
    schema.set_defaults(handler=_print_schema)
    return parser


def _load(args: argparse.Namespace) -> Config:
    path: str | None = args.config
    return embedded_defaults() if path is None else load(path)


def _run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    # Imported here so that `check` and `config schema` work without the serving stack.
    # The ignore covers the time before nursery_tree exists; drop it once it does.
    from trio_gitaly.nursery_tree import (  # type: ignore[import-not-found,unused-ignore]
        run_server,
    )

    status: int = run_server(cfg)
    return status


def _print_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console  # rich costs ~50 ms of startup
    from rich.table import Table

    cfg = _load(args)
    table = Table("storage", "path", "readable", "writable", "status", title="storages")
    all_ok = True
    for storage in cfg.storage:
        readable, writable, status = _probe_storage(storage.path)
        all_ok &= status == "ok"
        table.add_row(storage.name, storage.path, _yes_no(readable), _yes_no(writable), status)
    git_ok, git_line = _probe_git(cfg.git.bin_path)
    console = Console(highlight=False)
    if not console.is_terminal:
        # Piped (scripts, tests): no wrapping, so each storage stays on one greppable line.
        console.width = 10_000
    console.print(table)
    console.print(git_line, markup=False)
    return EXIT_OK if all_ok and git_ok else EXIT_USAGE


def _probe_storage(path: str) -> tuple[bool, bool, str]:
    """Return (readable, writable, status) for a storage directory."""
    if not os.path.exists(path):
        return False, False, "missing"
    if not os.path.isdir(path):
        return False, False, "not a directory"
    # Listing and creating entries both need search (x) permission on the directory.
    readable = os.access(path, os.R_OK | os.X_OK)
    writable = os.access(path, os.W_OK | os.X_OK)
    if not readable:
        return readable, writable, "not readable"
    if not writable:
        return readable, writable, "not writable"
    return readable, writable, "ok"


def _probe_git(bin_path: str) -> tuple[bool, str]:
    """Run `git version`; return whether it is usable and a one-line report."""
    git = bin_path or shutil.which("git")
    if not git:
        return False, "git: not found on PATH (set git.bin_path)"
    try:
        result = subprocess.run(
            [git, "version"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=GIT_PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"git: {git} version: timed out after {GIT_PROBE_TIMEOUT_S:g} s"
    except OSError as exc:
        return False, f"git: cannot run {git}: {exc.strerror or exc}"
    if result.returncode != 0:
        return False, f"git: {git} version: exit status {result.returncode}"
    version = _parse_git_version(result.stdout)
    if version is None:
        return False, f"git: {git} version: unrecognised output {result.stdout.strip()[:80]!r}"
    shown, minimum = _dotted(version), _dotted(MINIMUM_GIT_VERSION)
    if version < MINIMUM_GIT_VERSION:
        return False, f"git: {git} {shown} is too old (need >= {minimum})"
    return True, f"git: {git} {shown} ok (>= {minimum})"


def _parse_git_version(text: str) -> tuple[int, int, int] | None:
    # "git version 2.39.5", also "2.45.0.rc1", "2.39.3 (Apple Git-146)", "2.41.0.windows.1".
    match = _GIT_VERSION_RE.search(text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def _dotted(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"

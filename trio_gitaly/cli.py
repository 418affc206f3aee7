"""The `trio-gitaly` command: run the server, check a deployment, print the config schema,
connect git to a server (`ssh`), watch one (`top`).

Bad input (a config error, a missing file) is reported as one line on stderr with exit
status 2, never as a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Final, NoReturn

from trio_gitaly import __version__

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from trio_gitaly.config import Config

EXIT_OK: Final = 0
# argparse's own status for usage errors; config and check failures use it too.
EXIT_USAGE: Final = 2


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line `argv` (default: `sys.argv[1:]`) and exit with its status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if _is_ssh_probe(arguments):
        # git runs `<GIT_SSH_COMMAND> -G <host>` before every ssh operation to learn
        # whether its ssh is OpenSSH; answering before any import (this module imports
        # little for that reason) and without the interpreter's teardown keeps it cheap.
        sys.stdout.flush()
        os._exit(EXIT_OK)
    parser = _build_parser()
    args = parser.parse_args(arguments)
    sys.exit(args.handler(args))


def _is_ssh_probe(arguments: list[str]) -> bool:
    return arguments[:1] == ["ssh"] and "-G" in arguments[1:]


def _build_parser() -> argparse.ArgumentParser:
    import argparse

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
    run.add_argument(
        "--pid-file",
        metavar="PATH",
        help="write the serving process's pid here (default: $GITALY_PID_FILE, config pid_file)",
    )

    config = commands.add_parser("config", help="config file tools")
    config_commands = config.add_subparsers(title="commands", metavar="COMMAND", required=True)
    schema = config_commands.add_parser("schema", help="print the config file's JSON Schema")
    schema.set_defaults(handler=_print_schema)
    from trio_gitaly.clients.ssh import add_parser as add_ssh_parser
    from trio_gitaly.clients.top import add_parser as add_top_parser

    add_ssh_parser(commands)
    add_top_parser(commands)
    return parser


def _load(args: argparse.Namespace) -> Config | None:
    """The config `--config` names (or the embedded one); None after reporting an error."""
    # Imported here: `trio-gitaly ssh` runs for every git operation and needs none of it.
    from trio_gitaly.config import ConfigError, embedded_defaults, load

    path: str | None = args.config
    try:
        return embedded_defaults() if path is None else load(path)
    except ConfigError as exc:
        print(f"trio-gitaly: config error: {exc}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if cfg is None:
        return EXIT_USAGE
    # Imported here so that `check` and `config schema` start without the serving stack.
    from trio_gitaly.foreground import run_server
    from trio_gitaly.pidfile import pid_file_path

    status: int = run_server(cfg, pid_file=pid_file_path(args.pid_file, cfg.pid_file, os.environ))
    return status


def _print_schema(args: argparse.Namespace) -> int:
    import json

    from trio_gitaly.config import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from rich.console import Console  # rich costs ~50 ms of startup
    from rich.table import Table

    from trio_gitaly.limits.cgroups import probe as cgroups_probe

    cfg = _load(args)
    if cfg is None:
        return EXIT_USAGE
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
    # Unusable cgroups do not fail the check: the server runs without them, as Gitaly does.
    console.print(f"cgroups: {cgroups_probe(cfg.cgroups)}", markup=False)
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
    """Detect git exactly as the server does at start-up; return (usable, report line)."""
    import trio

    from trio_gitaly.git.version import MINIMUM_VERSION, GitSetupError, detect

    try:
        binary = trio.run(detect, bin_path)
    except GitSetupError as exc:
        return False, f"git: {exc}"
    return True, f"git: {binary.path} {binary.version} ok (>= {MINIMUM_VERSION})"


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"

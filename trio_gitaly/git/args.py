"""The argument model of a git command and the rules that keep input out of git's options.

A git argv is `git [-c k=v]... [--git-dir <repo>] <name> [<action>] <flags>
[--end-of-options] <args> [-- <post_sep_args>]`. Only `flags` may look like options; every
value that might come from a client goes into `args` (which may not start with a dash, and
sits after `--end-of-options` where git supports it) or `post_sep_args` (after `--`, so git
reads it as a path). This is Gitaly's `gitcmd.Command` model and its validation
(internal/git/gitcmd/command_description.go, command_options.go).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from trio_gitaly.errors import invalid_argument

if TYPE_CHECKING:
    from collections.abc import Sequence

# An allowlist, not a denylist: a subcommand nobody reviewed may run hooks, aliases, a
# pager, an editor or a network transport. Adding one here is a deliberate, reviewed step
# (Gitaly's `commandDescriptions` table plays the same role).
KNOWN_SUBCOMMANDS: Final = frozenset(
    {
        "am",
        "apply",
        "archive",
        "blame",
        "bundle",
        "cat-file",
        "check-attr",
        "check-ref-format",
        "commit-graph",
        "commit-tree",
        "config",
        "count-objects",
        "describe",
        "diff",
        "diff-tree",
        "fast-export",
        "fast-import",
        "fetch",
        "for-each-ref",
        "format-patch",
        "fsck",
        "gc",
        "grep",
        "hash-object",
        "index-pack",
        "init",
        "log",
        "ls-remote",
        "ls-tree",
        "maintenance",
        "merge-base",
        "merge-tree",
        "mktag",
        "mktree",
        "multi-pack-index",
        "name-rev",
        "notes",
        "pack-objects",
        "pack-refs",
        "patch-id",
        "prune",
        "prune-packed",
        "range-diff",
        "read-tree",
        "receive-pack",
        "refs",
        "remote",
        "repack",
        "replace",
        "rev-list",
        "rev-parse",
        "show",
        "show-ref",
        "shortlog",
        "symbolic-ref",
        "tag",
        "unpack-objects",
        "update-ref",
        "upload-archive",
        "upload-pack",
        "verify-pack",
        "version",
        "worktree",
    }
)

# Subcommands that would misread `--end-of-options`: hand-rolled parsers take it as a
# refname/directory/attribute (check-ref-format, upload-archive, check-attr, index-pack,
# unpack-objects, fast-import), others cannot tell options from paths and revisions
# (archive, blame, grep, range-diff, patch-id), rev-parse echoes it without --verify,
# rev-list's pseudo-revisions (--all, --not) are options, and `remote remove` rejects it.
# From Gitaly's scNoEndOfOptions flags, checked against git 2.39.
NO_END_OF_OPTIONS: Final = frozenset(
    {
        "archive",
        "blame",
        "check-attr",
        "check-ref-format",
        "fast-import",
        "grep",
        "index-pack",
        "patch-id",
        "range-diff",
        "remote",
        "rev-list",
        "rev-parse",
        "unpack-objects",
        "upload-archive",
    }
)

#: `-c` options on every command, in this order (a later `-c` wins over an earlier one, so
#: caller options come after these). Why each one:
#: - gc.auto, maintenance.auto: housekeeping is scheduled by the server, never by a push.
#: - core.autocrlf: bytes in, bytes out; no line-ending rewriting.
#: - core.useReplaceRefs: replace refs would let a pushed ref swap in other objects.
#: - core.bigFileThreshold: do not try to delta or inflate huge blobs in memory.
#: - core.fsync*, core.*Timeout: durable objects and refs after a crash, and lock waits
#:   long enough that concurrent ref updates do not fail spuriously (Gitaly's values).
GLOBAL_CONFIG: Final[tuple[tuple[str, str], ...]] = (
    ("gc.auto", "0"),
    ("maintenance.auto", "0"),
    ("core.autocrlf", "false"),
    ("core.useReplaceRefs", "false"),
    ("core.bigFileThreshold", "50m"),
    ("core.fsync", "objects,derived-metadata,reference"),
    ("core.fsyncMethod", "fsync"),
    ("core.packedRefsTimeout", "10000"),
    ("core.filesRefLockTimeout", "1000"),
)

_FLAG_RE: Final = re.compile(r"(?:-|--)[A-Za-z0-9]")
_ACTION_RE: Final = re.compile(r"[A-Za-z0-9]+[-A-Za-z0-9]*")
# section[.subsection].name as `git -c` parses it. No "=" anywhere, since git splits the
# `-c` value at the first "=": a key containing one would set a different key.
_CONFIG_KEY_RE: Final = re.compile(
    r"[A-Za-z0-9][-A-Za-z0-9]*(?:\.[^=\0\n]+)?\.[A-Za-z][-A-Za-z0-9]*"
)


@dataclass(frozen=True)
class GitCommand:
    """One git subcommand with its flags and arguments, validated on construction.

    Sequences are stored as tuples, so a command that exists is valid and stays so.

    Attributes:
        name: the subcommand; must be in `KNOWN_SUBCOMMANDS`.
        flags: options; each must start with `-` or `--` and an alphanumeric. A value goes
            in the same element (`--format=%(refname)`, `-mmessage`), never in the next.
        args: positional arguments; none may start with `-`.
        post_sep_args: arguments after `--` (paths); only NUL is refused.
        end_of_options: put `--end-of-options` between flags and args when the subcommand
            understands it (not those in `NO_END_OF_OPTIONS`); False leaves it out.
        action: the sub-subcommand of commands like `commit-graph write`, placed right
            after `name`; alphanumerics and dashes only.

    Raises:
        GitalyError: INVALID_ARGUMENT naming the first offending element.
    """

    name: str
    flags: Sequence[str] = ()
    args: Sequence[str] = ()
    post_sep_args: Sequence[str] = ()
    end_of_options: bool = True
    action: str = ""

    def __post_init__(self) -> None:
        for field_name in ("flags", "args", "post_sep_args"):
            value = getattr(self, field_name)
            # A bare string is a Sequence[str] to the type checker, and would be split
            # into one-character arguments.
            if isinstance(value, str | bytes):
                raise TypeError(f"GitCommand.{field_name} must be a sequence of str")
            object.__setattr__(self, field_name, tuple(value))
        _validate_command(self)

    def subcommand_argv(self) -> list[str]:
        """The argv from the subcommand name on (no binary, `-c` or `--git-dir`)."""
        argv = [self.name]
        if self.action:
            argv.append(self.action)
        argv.extend(self.flags)
        if self.end_of_options and self.name not in NO_END_OF_OPTIONS:
            argv.append("--end-of-options")
        argv.extend(self.args)
        if self.post_sep_args:
            argv.append("--")
            argv.extend(self.post_sep_args)
        return argv


def _validate_command(cmd: GitCommand) -> None:
    if cmd.name not in KNOWN_SUBCOMMANDS:
        raise invalid_argument(f"unknown git subcommand {cmd.name!r}")
    if cmd.action and not _ACTION_RE.fullmatch(cmd.action):
        raise invalid_argument(f"invalid subcommand action {cmd.action!r}")
    for flag in cmd.flags:
        _refuse_nul("flag", flag)
        if not _FLAG_RE.match(flag):
            raise invalid_argument(f"flag {flag!r} must start with '-' or '--' and an alnum")
    for arg in cmd.args:
        _refuse_nul("positional argument", arg)
        if arg.startswith("-"):
            raise invalid_argument(f"positional argument {arg!r} cannot start with '-'")
    for arg in cmd.post_sep_args:
        _refuse_nul("argument", arg)


def validate_config(config: Sequence[tuple[str, str]]) -> None:
    """Check caller `-c` options: a well-formed key, no NUL or newline anywhere.

    Raises:
        GitalyError: INVALID_ARGUMENT naming the offending key.
    """
    for key, value in config:
        if not _CONFIG_KEY_RE.fullmatch(key):
            raise invalid_argument(f"invalid config key {key!r}")
        if "\0" in value or "\n" in value:
            raise invalid_argument(f"config value for {key!r} contains nul or newline")


def build_argv(
    git_path: str,
    cmd: GitCommand,
    *,
    repo_path: str | None,
    config: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """The full, validated argv of `cmd` run by the git at `git_path`.

    Raises:
        GitalyError: INVALID_ARGUMENT for bad caller config or a NUL in `repo_path`.
    """
    validate_config(config)
    argv = [git_path]
    for key, value in (*GLOBAL_CONFIG, *config):
        argv += ["-c", f"{key}={value}"]
    if repo_path:
        _refuse_nul("repository path", repo_path)
        argv += ["--git-dir", repo_path]
    argv += cmd.subcommand_argv()
    return argv


def _refuse_nul(what: str, value: str) -> None:
    # The kernel ends an argv element at NUL, so git would see a different argument than
    # the one we validated.
    if "\0" in value:
        raise invalid_argument(f"{what} {value!r} contains nul")

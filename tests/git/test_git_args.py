"""argv building and argument validation: pure functions, no process is started."""

from __future__ import annotations

import pytest

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.args import GLOBAL_CONFIG, KNOWN_SUBCOMMANDS, NO_END_OF_OPTIONS
from trio_gitaly.git.command import CommandFactory, GitCommand
from trio_gitaly.git.version import GitBinary, GitVersion

GIT = "/usr/local/bin/git"
DEFAULTS = [arg for key, value in GLOBAL_CONFIG for arg in ("-c", f"{key}={value}")]


@pytest.fixture
def factory() -> CommandFactory:
    # argv() never runs the binary, so any path will do.
    return CommandFactory(GitBinary(GIT, GitVersion(2, 39, 5)))


def test_global_config_is_gitalys_in_order() -> None:
    assert [key for key, _ in GLOBAL_CONFIG] == [
        "gc.auto",
        "maintenance.auto",
        "core.autocrlf",
        "core.useReplaceRefs",
        "core.bigFileThreshold",
        "core.fsync",
        "core.fsyncMethod",
        "core.packedRefsTimeout",
        "core.filesRefLockTimeout",
    ]
    assert dict(GLOBAL_CONFIG)["core.fsync"] == "objects,derived-metadata,reference"


def test_argv_full_layout(factory: CommandFactory) -> None:
    cmd = GitCommand("cat-file", flags=["-t"], args=["HEAD"])
    assert factory.argv(cmd, repo_path="/srv/r.git") == [
        GIT,
        *DEFAULTS,
        "--git-dir",
        "/srv/r.git",
        "cat-file",
        "-t",
        "--end-of-options",
        "HEAD",
    ]


def test_argv_without_repository_has_no_git_dir(factory: CommandFactory) -> None:
    assert factory.argv(GitCommand("version"), repo_path=None) == [
        GIT,
        *DEFAULTS,
        "version",
        "--end-of-options",
    ]


def test_caller_config_follows_defaults(factory: CommandFactory) -> None:
    config = [("uploadpack.allowFilter", "true"), ("gc.auto", "1")]
    argv = factory.argv(GitCommand("upload-pack", args=["/r"]), repo_path="/r", config=config)
    n = len(DEFAULTS)
    assert argv[1 : n + 1] == DEFAULTS
    # Later -c wins in git, so a caller's option overrides a default of the same key.
    assert argv[n + 1 : n + 5] == ["-c", "uploadpack.allowFilter=true", "-c", "gc.auto=1"]
    assert argv[n + 5 : n + 7] == ["--git-dir", "/r"]


def test_post_separator_args_after_double_dash(factory: CommandFactory) -> None:
    cmd = GitCommand("log", flags=["--oneline"], args=["HEAD"], post_sep_args=["a", "-b"])
    assert factory.argv(cmd, repo_path=None)[-7:] == [
        "log",
        "--oneline",
        "--end-of-options",
        "HEAD",
        "--",
        "a",
        "-b",
    ]


def test_no_double_dash_without_post_separator_args(factory: CommandFactory) -> None:
    assert "--" not in factory.argv(GitCommand("log", args=["HEAD"]), repo_path=None)


def test_end_of_options_can_be_turned_off(factory: CommandFactory) -> None:
    cmd = GitCommand("log", flags=["-1"], args=["HEAD"], end_of_options=False)
    assert factory.argv(cmd, repo_path=None)[-3:] == ["log", "-1", "HEAD"]


@pytest.mark.parametrize("name", sorted(NO_END_OF_OPTIONS))
def test_end_of_options_left_out_where_git_misreads_it(factory: CommandFactory, name: str) -> None:
    assert "--end-of-options" not in factory.argv(GitCommand(name, args=["x"]), repo_path=None)


def test_action_comes_right_after_the_subcommand(factory: CommandFactory) -> None:
    cmd = GitCommand("commit-graph", action="write", flags=["--reachable"])
    assert factory.argv(cmd, repo_path="/r")[-4:] == [
        "commit-graph",
        "write",
        "--reachable",
        "--end-of-options",
    ]


def test_command_sequences_are_frozen() -> None:
    flags = ["--oneline"]
    cmd = GitCommand("log", flags=flags)
    flags.append("--evil")
    assert cmd.flags == ("--oneline",)


def test_bare_string_is_not_a_sequence_of_flags() -> None:
    with pytest.raises(TypeError, match="flags"):
        GitCommand("log", flags="--oneline")


def test_allowlist_has_what_the_services_need() -> None:
    assert {"cat-file", "upload-pack", "receive-pack", "update-ref", "init"} <= KNOWN_SUBCOMMANDS
    assert NO_END_OF_OPTIONS <= KNOWN_SUBCOMMANDS


@pytest.mark.parametrize(
    ("kwargs", "offender"),
    [
        pytest.param({"name": "daemon"}, "'daemon'", id="unknown-subcommand"),
        pytest.param({"name": "-c"}, "'-c'", id="option-as-subcommand"),
        pytest.param({"name": ""}, "''", id="empty-subcommand"),
        pytest.param({"name": "commit-graph", "action": "wr;te"}, "'wr;te'", id="bad-action"),
        pytest.param({"name": "commit-graph", "action": "-w"}, "'-w'", id="dash-action"),
        pytest.param({"name": "log", "flags": ["oneline"]}, "'oneline'", id="flag-no-dash"),
        pytest.param({"name": "log", "flags": ["-"]}, "'-'", id="flag-lone-dash"),
        pytest.param({"name": "log", "flags": ["--"]}, "'--'", id="flag-double-dash"),
        pytest.param({"name": "log", "flags": ["---x"]}, "'---x'", id="flag-triple-dash"),
        pytest.param({"name": "log", "flags": ["--format=\0"]}, "'--format=\\x00'", id="flag-nul"),
        pytest.param(
            {"name": "fetch", "args": ["--upload-pack=touch /tmp/x"]},
            "'--upload-pack=touch /tmp/x'",
            id="positional-option-injection",
        ),
        pytest.param({"name": "log", "args": ["-"]}, "'-'", id="positional-dash"),
        pytest.param({"name": "log", "args": ["HEAD\0"]}, "'HEAD\\x00'", id="positional-nul"),
        pytest.param({"name": "log", "post_sep_args": ["a\0b"]}, "'a\\x00b'", id="path-nul"),
    ],
)
def test_invalid_command_is_refused(kwargs: dict[str, object], offender: str) -> None:
    with pytest.raises(GitalyError) as info:
        GitCommand(**kwargs)  # type: ignore[arg-type]
    assert info.value.code == StatusCode.INVALID_ARGUMENT
    assert offender in info.value.message
    assert info.value.message[0].islower()


@pytest.mark.parametrize(
    ("config", "offender"),
    [
        pytest.param([("gc", "1")], "'gc'", id="no-dot"),
        pytest.param([("", "1")], "''", id="empty"),
        pytest.param([("gc.", "1")], "'gc.'", id="empty-name"),
        pytest.param([(".auto", "1")], "'.auto'", id="empty-section"),
        pytest.param([("gc.1auto", "1")], "'gc.1auto'", id="name-starts-with-digit"),
        pytest.param([("gc.auto=1 x", "1")], "'gc.auto=1 x'", id="equals-in-key"),
        pytest.param([("-c.x", "1")], "'-c.x'", id="dash-section"),
        pytest.param([("a.b\n.c", "1")], "'a.b\\n.c'", id="newline-in-key"),
        pytest.param([("a.b\0.c", "1")], "'a.b\\x00.c'", id="nul-in-key"),
        pytest.param([("core.pager", "a\nb")], "'core.pager'", id="newline-in-value"),
        pytest.param([("core.pager", "a\0b")], "'core.pager'", id="nul-in-value"),
    ],
)
def test_invalid_config_is_refused(
    factory: CommandFactory, config: list[tuple[str, str]], offender: str
) -> None:
    with pytest.raises(GitalyError) as info:
        factory.argv(GitCommand("version"), repo_path=None, config=config)
    assert info.value.code == StatusCode.INVALID_ARGUMENT
    assert offender in info.value.message


@pytest.mark.parametrize(
    "key",
    ["gc.auto", "uploadpack.allowFilter", "url.https://example.com/.insteadOf", "a-b.c.d-e"],
)
def test_valid_config_keys(factory: CommandFactory, key: str) -> None:
    argv = factory.argv(GitCommand("version"), repo_path=None, config=[(key, "v=w")])
    assert f"{key}=v=w" in argv


def test_nul_in_repository_path_is_refused(factory: CommandFactory) -> None:
    with pytest.raises(GitalyError) as info:
        factory.argv(GitCommand("version"), repo_path="/r\0x")
    assert info.value.code == StatusCode.INVALID_ARGUMENT

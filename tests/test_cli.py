"""The `trio-gitaly` command, run as a real subprocess as an operator would."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import trio_gitaly

SCHEMA_FILE = Path(__file__).parent.parent / "schemas" / "config.schema.json"
CLI_TIMEOUT_S = 60.0


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_gitaly", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def write_config(tmp_path: Path, text: str) -> str:
    (tmp_path / "file").write_text("not a directory\n")
    path = tmp_path / "config.toml"
    path.write_text(text.replace("@TMP@", str(tmp_path)))
    return str(path)


def fake_git(directory: Path, script: str) -> Path:
    """A real executable standing in for git, for versions the host does not have."""
    directory.mkdir(exist_ok=True)
    path = directory / "git"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


STORAGE = '[[storage]]\nname = "default"\npath = "@TMP@/repos"\n'
GOOD = 'listen_addr = "127.0.0.1:0"\n' + STORAGE
FILE_STORAGE = 'listen_addr = "127.0.0.1:0"\n[[storage]]\nname = "a"\npath = "@TMP@/file"\n'

BAD_CONFIGS = [
    # (id, TOML, expected "<key>: <problem>" prefix)
    ("unknown-key", 'bin_dir = "/x"\n' + GOOD, "bin_dir: unknown key"),
    ("wrong-type", GOOD + '[grpc]\nmax_message_bytes = "big"\n',
     "grpc.max_message_bytes: expected int, got str"),
    ("bad-duration", 'graceful_restart_timeout = "soon"\n' + GOOD,
     "graceful_restart_timeout: invalid duration 'soon'"),
    ("bad-address", 'listen_addr = "localhost"\n' + STORAGE,
     "listen_addr: invalid address 'localhost': missing port"),
    ("duplicate-storage", GOOD + STORAGE, "storage[1].name: duplicate storage name 'default'"),
    ("storage-is-file", FILE_STORAGE, "storage[0].path: not a directory"),
    ("no-listener", STORAGE, "listen_addr: no listener configured"),
    ("tls-without-certificate", 'tls_listen_addr = "127.0.0.1:0"\n' + STORAGE,
     "tls.certificate_path: required when tls_listen_addr is set"),
    ("invalid-toml", GOOD + "[grpc\n", "--config: invalid TOML"),
]  # fmt: skip


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize(
    ("text", "expected"), [case[1:] for case in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_is_one_line(tmp_path: Path, command: str, text: str, expected: str) -> None:
    result = run_cli(tmp_path, command, "--config", write_config(tmp_path, text))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"trio-gitaly: config error: {expected}")


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "check", "--config", "nope.toml")
    assert result.returncode == 2
    assert result.stderr == (
        "trio-gitaly: config error: --config: cannot read 'nope.toml': no such file or directory\n"
    )


def test_version(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--version")
    assert (result.returncode, result.stdout) == (0, f"trio-gitaly {trio_gitaly.__version__}\n")


@pytest.mark.parametrize("args", [(), ("config",), ("frobnicate",)], ids=["none", "config", "bad"])
def test_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run_cli(tmp_path, *args)
    assert result.returncode == 2
    assert "usage: trio-gitaly" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_check_good_config(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "check", "--config", write_config(tmp_path, GOOD))
    assert result.returncode == 0, result.stdout + result.stderr
    storage_line = next(line for line in result.stdout.splitlines() if "default" in line)
    assert str(tmp_path / "repos") in storage_line
    assert "ok" in storage_line
    assert "git: " in result.stdout
    assert (tmp_path / "repos").is_dir()


def test_check_embedded_defaults(tmp_path: Path) -> None:
    # No config file: the embedded defaults, with git from PATH (here, the fake).
    fake_git(tmp_path / "bin", 'echo "git version 2.45.1"')
    result = subprocess.run(
        [sys.executable, "-m", "trio_gitaly", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
        env={"PATH": str(tmp_path / "bin")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "trio-gitaly-data" / "repositories").is_dir()
    assert "2.45.1 ok" in result.stdout


@pytest.mark.parametrize(
    ("script", "fragment", "status"),
    [('echo "git version 2.36.0"', "2.36.0 ok", 0),
     ('echo "git version 2.45.0.rc1"', "2.45.0.rc1 ok", 0),
     ('echo "git version 2.20.1"', "unsupported git version 2.20.1: trio-gitaly needs 2.36.0", 2),
     ("echo hello", "printed an unparsable version: 'hello'", 2),
     ("exit 3", "exited with status 3", 2)],
    ids=["minimum", "rc", "too-old", "garbage", "fails"],
)  # fmt: skip
def test_check_git_version(tmp_path: Path, script: str, fragment: str, status: int) -> None:
    git = fake_git(tmp_path / "bin", script)
    text = GOOD + f'[git]\nbin_path = "{git}"\n'
    result = run_cli(tmp_path, "check", "--config", write_config(tmp_path, text))
    assert result.returncode == status, result.stdout + result.stderr
    assert fragment in result.stdout


def test_check_git_not_executable(tmp_path: Path) -> None:
    text = GOOD + '[git]\nbin_path = "@TMP@/no-such-git"\n'
    result = run_cli(tmp_path, "check", "--config", write_config(tmp_path, text))
    assert result.returncode == 2
    assert "git binary not found" in result.stdout
    assert "Traceback" not in result.stderr


def test_check_storage_that_is_a_file(tmp_path: Path) -> None:
    # Running as root, permissions cannot make a storage unusable; a file in its place can.
    result = run_cli(tmp_path, "check", "--config", write_config(tmp_path, FILE_STORAGE))
    assert result.returncode == 2
    assert result.stderr.startswith("trio-gitaly: config error: storage[0].path: not a directory")


@pytest.mark.parametrize(
    ("cgroups", "line"),
    [("", "cgroups: off (cgroups.repositories.count = 0)"),
     ('[cgroups]\nmountpoint = "@TMP@/no-cgroup"\n[cgroups.repositories]\ncount = 2\n',
      "cgroups: unavailable: @TMP@/no-cgroup does not exist or is not a directory; "
      "the server runs without cgroups")],
    ids=["off", "unavailable"],
)  # fmt: skip
def test_check_reports_cgroups(tmp_path: Path, cgroups: str, line: str) -> None:
    git = fake_git(tmp_path / "bin", 'echo "git version 2.45.1"')
    text = GOOD + f'[git]\nbin_path = "{git}"\n' + cgroups
    result = run_cli(tmp_path, "check", "--config", write_config(tmp_path, text))
    # Unusable cgroups do not fail the check: the server runs without them.
    assert result.returncode == 0, result.stdout + result.stderr
    assert line.replace("@TMP@", str(tmp_path)) in result.stdout.splitlines()
    assert not (tmp_path / "no-cgroup").exists()


def test_config_schema_matches_file(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "config", "schema")
    assert result.returncode == 0, result.stderr
    assert result.stdout == SCHEMA_FILE.read_text(), (
        f"{SCHEMA_FILE} is out of date; regenerate it with "
        "`.venv/bin/trio-gitaly config schema > schemas/config.schema.json`"
    )

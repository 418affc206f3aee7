"""`trio-gitaly ssh` as a program: its remote commands, the ssh options git passes it,
its exit statuses, and how it reaches the server (unix, TCP, TLS, tokens).
"""

from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import pytest
import trio
import trustme

from tests.helpers import make_config, storage_path
from tests.repos import rich_repository
from tests.transport_helpers import client_env, run_git, ssh_url, unix_address
from trio_gitaly.clients.ssh import (
    EXIT_FATAL,
    EXIT_SSH_ERROR,
    CommandError,
    RemoteCommand,
    parse_remote_command,
)
from trio_gitaly.config import AuthConfig, Config, ListenAddress, TlsConfig
from trio_gitaly.nursery_tree import RunningServer, serve

TOKEN = "ssh-client-token"
SSH_TIMEOUT_S = 30.0
SSH = (sys.executable, "-m", "trio_gitaly", "ssh")


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("git-upload-pack '/default/group/project.git'", ("SSHUploadPack", "group/project.git")),
        ("git-receive-pack 'default/project.git'", ("SSHReceivePack", "project.git")),
        ("git-upload-archive '/default/a/b/c.git'", ("SSHUploadArchive", "a/b/c.git")),
        ("git upload-pack '/default/x.git'", ("SSHUploadPack", "x.git")),
        # git's quoting of ' and ! in paths (sq_quote_buf).
        ("git-upload-pack '/default/it'\\''s'\\!'.git'", ("SSHUploadPack", "it's!.git")),
        ("git-upload-pack '/default/with space.git'", ("SSHUploadPack", "with space.git")),
    ],
)
def test_remote_commands_name_rpc_and_repository(command: str, expected: tuple[str, str]) -> None:
    rpc, relative_path = expected
    assert parse_remote_command(command) == RemoteCommand(rpc, "default", relative_path)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("rm -rf /", "unsupported remote command"),
        ("git-upload-pack", "unsupported remote command"),
        ("git-upload-pack '/default/x.git' extra", "unsupported remote command"),
        ("git-shell -c 'git-upload-pack x'", "unsupported remote command"),
        ("git-upload-pack '/default'", "invalid repository path"),
        ("git-upload-pack '/default/'", "invalid repository path"),
        ("git-upload-pack ''", "invalid repository path"),
        ("git-upload-pack 'unterminated", "cannot parse remote command"),
    ],
)
def test_other_remote_commands_are_refused(command: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_remote_command(command)


def run_ssh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`trio-gitaly ssh ARGS` with its stdin closed, as a program of its own."""
    return subprocess.run(
        [*SSH, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=SSH_TIMEOUT_S,
        check=False,
    )


async def ssh_call(address: str, path: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    """`trio-gitaly ssh` asked for upload-pack on `path`, with nothing to say (stdin empty).

    Run from trio: the server of the test answers meanwhile.
    """
    with trio.fail_after(SSH_TIMEOUT_S):
        return await trio.run_process(
            [*SSH, "--address", address, "host", f"git-upload-pack '{path}'"],
            stdin=b"",
            capture_stdout=True,
            capture_stderr=True,
            env={**os.environ, **env},
            check=False,
        )


def test_openssh_probe_succeeds() -> None:
    # git runs `<GIT_SSH_COMMAND> -G <host>` and treats the program as OpenSSH only if it
    # exits 0; as OpenSSH it gets protocol v2 (GIT_PROTOCOL) and may be given a port.
    result = run_ssh("-G", "-o", "SendEnv=GIT_PROTOCOL", "-p", "2222", "example.com")
    assert (result.returncode, result.stdout) == (0, "")


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["host", "rm -rf /"], EXIT_FATAL, "unsupported remote command 'rm -rf /'"),
        (["host"], EXIT_FATAL, "no remote command"),
        (["host", "git-upload-pack", "'/default'"], EXIT_FATAL, "invalid repository path"),
        (
            ["--address", "http://x", "host", "git-upload-pack '/default/x.git'"],
            EXIT_SSH_ERROR,
            "invalid address 'http://x'",
        ),
        (
            ["--token-file", "/nonexistent/token", "host", "git-upload-pack '/default/x.git'"],
            EXIT_SSH_ERROR,
            "No such file or directory",
        ),
    ],
)
def test_usage_errors_are_one_line(args: list[str], status: int, message: str) -> None:
    result = run_ssh(*args)
    assert result.returncode == status
    assert result.stderr.startswith("trio-gitaly ssh: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_unreachable_server_fails_with_status_1(short_dir: str) -> None:
    address = f"unix://{short_dir}/nobody.sock"
    result = run_ssh("--address", address, "host", "git-upload-pack '/default/x.git'")
    assert result.returncode == 1
    assert result.stderr.startswith("trio-gitaly ssh: ")
    assert "(UNAVAILABLE)" in result.stderr


async def test_address_comes_from_the_environment(server: RunningServer, config: Config) -> None:
    rich_repository(os.path.join(storage_path(config), "env.git"))
    env = client_env(unix_address(config), TRIO_GITALY_ADDRESS=unix_address(config))
    env["GIT_SSH_COMMAND"] = f"{sys.executable} -m trio_gitaly ssh"  # no --address
    result = await run_git("ls-remote", ssh_url("env.git"), env=env)
    assert b"refs/heads/main" in result.stdout


async def test_missing_repository_is_fatal(server: RunningServer, config: Config) -> None:
    result = await ssh_call(unix_address(config), "/default/missing.git")
    assert result.returncode == EXIT_FATAL
    assert result.stderr == b"trio-gitaly ssh: repository not found (NOT_FOUND)\n"
    # git shows the line to its user.
    cloned = await run_git(
        "ls-remote", ssh_url("missing.git"), env=client_env(unix_address(config)), check=False
    )
    assert b"trio-gitaly ssh: repository not found (NOT_FOUND)\n" in cloned.stderr


async def test_tcp_and_a_port_in_the_url(server: RunningServer, config: Config) -> None:
    # A port in the URL makes git pass -p, which it refuses for a "simple" ssh: this
    # passes only because git took us for OpenSSH.
    rich_repository(os.path.join(storage_path(config), "tcp.git"))
    env = client_env("tcp://" + server.addresses["tcp"][0])
    result = await run_git("ls-remote", "ssh://trio-gitaly:2222/default/tcp.git", env=env)
    assert b"refs/heads/main" in result.stdout


async def test_tls_with_a_ca_file(nursery: trio.Nursery, short_dir: str) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = {name: os.path.join(short_dir, f"{name}.pem") for name in ("ca", "cert", "key")}
    ca.cert_pem.write_to_path(paths["ca"])
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    cert.private_key_pem.write_to_path(paths["key"])
    cfg = msgspec.structs.replace(
        make_config(short_dir),
        tls_listen_addr=ListenAddress.parse("127.0.0.1:0"),
        tls=TlsConfig(certificate_path=paths["cert"], key_path=paths["key"]),
    )
    running: RunningServer = await nursery.start(serve, cfg)
    rich_repository(os.path.join(storage_path(cfg), "tls.git"))
    address = "tls://" + running.addresses["tls"][0]

    trusted = client_env(address, "--ca-file", paths["ca"])
    result = await run_git("ls-remote", ssh_url("tls.git"), env=trusted)
    assert b"refs/heads/main" in result.stdout

    untrusted = await ssh_call(address, "/default/tls.git")
    assert untrusted.returncode == 1
    assert b"(UNAVAILABLE)" in untrusted.stderr


async def test_token_from_environment_or_file(nursery: trio.Nursery, short_dir: str) -> None:
    cfg = msgspec.structs.replace(make_config(short_dir), auth=AuthConfig(token=TOKEN))
    await nursery.start(serve, cfg)
    rich_repository(os.path.join(storage_path(cfg), "auth.git"))
    url = ssh_url("auth.git")
    address = unix_address(cfg)

    denied = await ssh_call(address, "/default/auth.git")
    assert denied.returncode == 1
    assert denied.stderr.endswith(b"(UNAUTHENTICATED)\n")

    by_env = await run_git("ls-remote", url, env=client_env(address, TRIO_GITALY_TOKEN=TOKEN))
    assert b"refs/heads/main" in by_env.stdout

    token_file = os.path.join(short_dir, "token")
    with open(token_file, "w", encoding="utf-8") as f:
        f.write(TOKEN + "\n")
    by_file = await run_git("ls-remote", url, env=client_env(address, "--token-file", token_file))
    assert by_file.stdout == by_env.stdout

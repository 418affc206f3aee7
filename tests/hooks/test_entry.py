"""The hook entry point, run as git runs it: `python -m trio_gitaly.hooks <hook> [args]`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import trio

from tests.helpers import make_config
from tests.hooks.helpers import (
    CHANGES,
    NEW,
    OLD,
    RECORDING_HOOK,
    bare_repository,
    payload_env,
    write_hook,
)
from trio_gitaly.config import AuthConfig, Config
from trio_gitaly.hooks.payload import PAYLOAD_ENV, Hook, HooksPayload, PayloadError
from trio_gitaly.hooks.relay import push_options
from trio_gitaly.nursery_tree import RunningServer

TOKEN = "internal-socket-token"
ERROR = b"error executing git hook\n"


@pytest.fixture
def config(short_dir: str) -> Config:
    """The test server with authentication on: hooks must send the token."""
    return make_config(short_dir, auth=AuthConfig(token=TOKEN))


async def run_hook(
    *args: str, env: dict[str, str], stdin: bytes = b"", cwd: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run the entry point in a child process with exactly `env` (plus PATH)."""
    return await trio.run_process(
        [sys.executable, "-m", "trio_gitaly.hooks", *args],
        env={"PATH": os.environ["PATH"], **env},
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=cwd,
    )


def environment(entry: str, **extra: str) -> dict[str, str]:
    name, _, value = entry.partition("=")
    return {name: value, **extra}


async def test_hook_not_requested_exits_at_once_without_grpc(config: Config) -> None:
    repo, _ = bare_repository(config)
    env = environment(payload_env(repo, requested=Hook.PRE_RECEIVE))
    code = (
        "import sys; from trio_gitaly.hooks.entry import main; "
        "status = main(['update', 'a', 'b', 'c']); "
        "assert 'grpc' not in sys.modules and 'google.protobuf' not in sys.modules; "
        "sys.exit(status)"
    )
    result = await trio.run_process(
        [sys.executable, "-c", code], env={**env}, capture_stdout=True, capture_stderr=True
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["pre-receive"], {}),
        (["pre-receive"], {PAYLOAD_ENV: "not base64!"}),
        (["pre-receive"], {PAYLOAD_ENV: "eyJyZXBvc2l0b3J5IjogIiJ9"}),  # {"repository": ""}
        (["pack-objects"], None),
        ([], None),
        (["update", "refs/heads/main"], None),
        (["reference-transaction", "started"], None),
    ],
)
async def test_unusable_invocations(config: Config, args: list[str], env: dict | None) -> None:
    repo, _ = bare_repository(config)
    result = await run_hook(*args, env=env if env is not None else environment(payload_env(repo)))
    assert (result.returncode, result.stdout, result.stderr) == (1, b"", ERROR)


async def test_no_server(config: Config, short_dir: str) -> None:
    repo, _ = bare_repository(config)
    env = environment(payload_env(repo, socket=os.path.join(short_dir, "gone.sock")))
    result = await run_hook("pre-receive", env=env, stdin=CHANGES)
    assert (result.returncode, result.stdout, result.stderr) == (1, b"", ERROR)


async def test_pre_receive_relays_output_and_exit_status(
    server: RunningServer, config: Config
) -> None:
    repo, path = bare_repository(config)
    write_hook(
        os.path.join(path, "custom_hooks", "pre-receive"),
        '#!/bin/sh\ncat\necho "options: $GIT_PUSH_OPTION_COUNT $GIT_PUSH_OPTION_1" >&2\nexit 3\n',
    )
    socket = server.addresses["internal"][0]
    env = environment(
        payload_env(repo, socket=socket, token=TOKEN),
        GIT_PUSH_OPTION_COUNT="2",
        GIT_PUSH_OPTION_0="ci.skip",
        GIT_PUSH_OPTION_1="merge_request.create",
    )
    # More stdin than one message carries: it streams through in pieces.
    stdin = CHANGES * 5000
    result = await run_hook("pre-receive", env=env, stdin=stdin)
    assert result.returncode == 3
    assert result.stdout == stdin
    assert result.stderr == b"options: 2 merge_request.create\n"


async def test_wrong_token(server: RunningServer, config: Config) -> None:
    repo, _ = bare_repository(config)
    socket = server.addresses["internal"][0]
    env = environment(payload_env(repo, socket=socket, token="wrong"))
    result = await run_hook("post-receive", env=env, stdin=CHANGES)
    assert (result.returncode, result.stderr) == (1, ERROR)


async def test_update_and_reference_transaction(
    server: RunningServer, config: Config, short_dir: str
) -> None:
    repo, path = bare_repository(config)
    write_hook(
        os.path.join(path, "custom_hooks", "update"), RECORDING_HOOK.format(log_dir=short_dir)
    )
    socket = server.addresses["internal"][0]
    env = environment(payload_env(repo, socket=socket, token=TOKEN))
    result = await run_hook("update", "refs/heads/main", OLD, NEW, env=env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    with open(os.path.join(short_dir, "runs")) as f:
        assert f.read() == f"update refs/heads/main {OLD} {NEW}|\n"
    for state in ("prepared", "committed", "aborted"):
        result = await run_hook("reference-transaction", state, env=env, stdin=CHANGES)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    # A server error (an invalid old value) is not a hook's refusal.
    result = await run_hook("update", "refs/heads/main", "x", NEW, env=env)
    assert (result.returncode, result.stderr) == (1, ERROR)


@pytest.mark.parametrize(
    ("env", "options"),
    [
        ({}, []),
        ({"GIT_PUSH_OPTION_COUNT": "2", "GIT_PUSH_OPTION_0": "a"}, ["a", ""]),
        ({"GIT_PUSH_OPTION_COUNT": "1_0", "GIT_PUSH_OPTION_0": "a"}, []),
        ({"GIT_PUSH_OPTION_COUNT": "-1"}, []),
    ],
)
def test_push_options(monkeypatch: pytest.MonkeyPatch, env: dict, options: list) -> None:
    for name in ("GIT_PUSH_OPTION_COUNT", "GIT_PUSH_OPTION_0"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert push_options() == options


@pytest.mark.parametrize(
    "document",
    [
        '{"repository": "{}", "requested_hooks": "4"}',
        '{"repository": "{}", "requested_hooks": -1}',
        '{"repository": "{}", "requested_hooks": true}',
        '{"repository": "[]"}',
        '{"repository": "{", "requested_hooks": 4}',
        '{"repository": "{}", "user_details": []}',
        "[]",
    ],
)
def test_payload_rejects_what_gitaly_rejects(document: str) -> None:
    import base64

    with pytest.raises(PayloadError):
        HooksPayload.decode(base64.b64encode(document.encode()).decode())


def test_payload_zero_bitmask_means_all_but_proc_receive() -> None:
    import base64

    value = base64.b64encode(b'{"repository": "{}", "requested_hooks": 0}').decode()
    payload = HooksPayload.decode(value)
    assert all(payload.is_requested(hook) for hook in Hook if hook is not Hook.PROC_RECEIVE)
    assert not payload.is_requested(Hook.PROC_RECEIVE)

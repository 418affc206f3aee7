"""HookService without GitLab's API: validations, custom hooks, exit codes, cancellation."""

from __future__ import annotations

import os
import shutil

import grpc
import pytest
import trio

from tests.helpers import Client, make_config
from tests.hooks.helpers import (
    CHANGES,
    NEW,
    OLD,
    RECORDING_HOOK,
    SERVICE,
    bare_repository,
    payload_env,
    pre_receive,
    read_env,
    update,
    write_hook,
)
from trio_gitaly.config import Config, HooksConfig
from trio_gitaly.hooks.payload import UserDetails
from trio_gitaly.nursery_tree import RunningServer
from trio_gitaly.rpc.gen.gitaly import hook_pb2, shared_pb2

State = hook_pb2.ReferenceTransactionHookRequest
hook = hook_pb2


@pytest.fixture
def config(short_dir: str) -> Config:
    """The test server, with a server-wide custom hooks directory."""
    global_dir = os.path.join(short_dir, "global-hooks")
    os.makedirs(global_dir)
    return make_config(short_dir, hooks=HooksConfig(custom_hooks_dir=global_dir))


@pytest.fixture
def log_dir(short_dir: str) -> str:
    path = os.path.join(short_dir, "log")
    os.makedirs(path)
    return path


def runs(log_dir: str) -> list[str]:
    with open(os.path.join(log_dir, "runs"), errors="surrogateescape") as f:
        return f.read().splitlines()


# What the recording hook must see besides GIT_DIR, PWD and PATH.
EXPECTED_ENV = {
    "GL_ID": "key-42",
    "GL_USERNAME": "jdoe",
    "GL_PROTOCOL": "ssh",
    "GL_REPOSITORY": "project-1",
    "GL_PROJECT_PATH": "group/project",
    "GIT_OBJECT_DIRECTORY": "/quarantine/objects",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES": "/repo/objects",
    "GIT_PUSH_OPTION_COUNT": "2",
    "GIT_PUSH_OPTION_0": "ci.skip",
    "GIT_PUSH_OPTION_1": "x=y",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "LANG": "en_US.UTF-8",
    "http_proxy": "http://proxy:3128",
}


async def reference_transaction(
    client: Client, repo: shared_pb2.Repository, env: list[str], state: int
) -> list[hook_pb2.ReferenceTransactionHookResponse]:
    requests = [
        State(repository=repo, environment_variables=env, state=state),  # type: ignore[arg-type]
        State(stdin=CHANGES),
    ]
    return await client.stream(
        SERVICE + "ReferenceTransactionHook",
        requests,
        hook_pb2.ReferenceTransactionHookResponse,
        client_streaming=True,
    )


@pytest.mark.parametrize(
    ("method", "request_type", "response_type", "streaming"),
    [
        ("PreReceiveHook", hook.PreReceiveHookRequest, hook.PreReceiveHookResponse, True),
        ("PostReceiveHook", hook.PostReceiveHookRequest, hook.PostReceiveHookResponse, True),
        ("UpdateHook", hook.UpdateHookRequest, hook.UpdateHookResponse, False),
        ("ReferenceTransactionHook", State, hook.ReferenceTransactionHookResponse, True),
    ],
)  # fmt: skip
async def test_repository_validation(
    client: Client, method: str, request_type: type, response_type: type, streaming: bool
) -> None:
    async def fail(repository: shared_pb2.Repository) -> grpc.RpcError:
        request = request_type(repository=repository)
        payload = [request] if streaming else request
        return await client.stream_error(
            SERVICE + method, payload, response_type, client_streaming=streaming
        )

    error = await fail(shared_pb2.Repository())
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "repository not set",
    )
    error = await fail(shared_pb2.Repository(storage_name="default", relative_path="nope.git"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = await fail(shared_pb2.Repository(storage_name="other", relative_path="x.git"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_empty_request_stream(client: Client) -> None:
    method = client.channel.stream_stream(
        SERVICE + "PreReceiveHook",
        request_serializer=hook_pb2.PreReceiveHookRequest.SerializeToString,
        response_deserializer=hook_pb2.PreReceiveHookResponse.FromString,
    )
    with pytest.raises(grpc.RpcError) as info:
        await trio.to_thread.run_sync(lambda: list(method(iter(()), timeout=10)))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "receiving first request: EOF"


async def test_unimplemented_hooks(client: Client) -> None:
    error = await client.error(
        SERVICE + "PackObjectsHookWithSidechannel",
        hook_pb2.PackObjectsHookWithSidechannelRequest(),
        hook_pb2.PackObjectsHookWithSidechannelResponse,
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    error = await client.stream_error(
        SERVICE + "ProcReceiveHook",
        [hook_pb2.ProcReceiveHookRequest()],
        hook_pb2.ProcReceiveHookResponse,
        client_streaming=True,
    )
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_reference_transaction(client: Client, config: Config) -> None:
    repo, _ = bare_repository(config)
    env = [payload_env(repo)]
    for state in (State.PREPARED, State.COMMITTED, State.ABORTED):
        [response] = await reference_transaction(client, repo, env, state)
        assert response.HasField("exit_status")
        assert response.exit_status.value == 0
    cases = [
        (env, 7, grpc.StatusCode.INVALID_ARGUMENT, "invalid hook state"),
        (
            [],
            State.PREPARED,
            grpc.StatusCode.INTERNAL,
            "reference-transaction hook: extracting hooks payload: "
            "no hooks payload found in environment",
        ),
        (
            [payload_env(repo, object_format="md5")],
            State.COMMITTED,
            grpc.StatusCode.INTERNAL,
            'reference-transaction hook: looking up object hash: unknown object format: "md5"',
        ),
    ]
    for environment, state, code, message in cases:
        with pytest.raises(grpc.RpcError) as info:
            await reference_transaction(client, repo, environment, state)
        assert (info.value.code(), info.value.details()) == (code, message)


async def test_update_validation(client: Client, config: Config) -> None:
    repo, _ = bare_repository(config)
    env = [payload_env(repo)]
    cases = [
        ([], b"refs/heads/main", OLD, NEW,
         "extracting hooks payload: no hooks payload found in environment"),
        ([payload_env(repo, object_format="")], b"refs/heads/main", OLD, NEW,
         'looking up object hash: unknown object format: ""'),
        (env, b"", OLD, NEW, "hook got no reference"),
        (env, b"refs/heads/main", "x", NEW,
         'hook got invalid old value: invalid object ID: "x", expected length 40, got 1'),
        (env, b"refs/heads/main", OLD, "g" * 40,
         f'hook got invalid new value: invalid object ID: "{"g" * 40}", invalid character \'g\''),
        ([payload_env(repo, user=None)], b"refs/heads/main", OLD, NEW,
         "payload has no receive hooks info"),
    ]  # fmt: skip
    for environment, ref, old, new, message in cases:
        with pytest.raises(grpc.RpcError) as info:
            await update(client, repo, environment, ref, old, new)
        assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INTERNAL, message)
    result = await update(client, repo, env, b"refs/heads/main", OLD, NEW)
    assert (result.exit_status, result.stdout, result.stderr) == (0, b"", b"")


async def test_update_runs_custom_hooks_with_arguments(
    client: Client, config: Config, log_dir: str
) -> None:
    repo, path = bare_repository(config)
    write_hook(os.path.join(path, "custom_hooks", "update"), RECORDING_HOOK.format(log_dir=log_dir))
    write_hook(
        os.path.join(path, "custom_hooks", "update.d", "refuse"),
        "#!/bin/sh\necho out\necho 'error123' >&2\nexit 1\n",
    )
    result = await update(client, repo, [payload_env(repo)], b"refs/heads/\xff", OLD, NEW)
    assert (result.exit_status, result.stdout, result.stderr) == (1, b"out\n", b"error123\n")
    assert runs(log_dir) == [f"update refs/heads/\udcff {OLD} {NEW}|"]
    env = read_env(os.path.join(log_dir, "update.env"))
    assert (env["GL_ID"], env["GL_USERNAME"], env["GL_PROTOCOL"]) == ("key-42", "jdoe", "ssh")
    assert "GIT_PUSH_OPTION_COUNT" not in env


async def test_pre_receive_validation(client: Client, config: Config) -> None:
    repo, _ = bare_repository(config)
    result = await pre_receive(client, repo, [payload_env(repo)], b"")
    assert (result.exit_status, result.stderr) == (1, b"hook got no reference updates")
    result = await pre_receive(client, repo, ["OTHER=1"])
    assert result.exit_status == 1
    assert result.stderr == b"extracting hooks payload: no hooks payload found in environment"
    result = await pre_receive(client, repo, [payload_env(repo, user=None)])
    assert (result.exit_status, result.stderr) == (1, b"payload has no receive hooks info")
    # Without GitLab's API, gl_repository and the protocol are not needed.
    bare = shared_pb2.Repository(storage_name="default", relative_path="repo.git")
    env = [payload_env(bare, user=UserDetails(username="jdoe"))]
    result = await pre_receive(client, bare, env)
    assert (result.exit_status, result.stderr) == (0, b"")


async def test_custom_hooks_order_and_environment(
    client: Client, config: Config, log_dir: str
) -> None:
    repo, path = bare_repository(config)
    assert config.hooks.custom_hooks_dir
    recording = RECORDING_HOOK.format(log_dir=log_dir)
    own = os.path.join(path, "custom_hooks")
    write_hook(os.path.join(own, "pre-receive"), recording)
    for name in ("20-b", "10-a", "30-c~"):
        write_hook(os.path.join(own, "pre-receive.d", name), recording)
    os.makedirs(os.path.join(own, "pre-receive.d", "15-dir"))
    with open(os.path.join(own, "pre-receive.d", "16-not-executable"), "w") as f:
        f.write(recording)
    write_hook(os.path.join(config.hooks.custom_hooks_dir, "pre-receive.d", "00-global"), recording)
    env = [
        payload_env(repo),
        "GIT_OBJECT_DIRECTORY=/quarantine/objects",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES=/repo/objects",
        "GIT_QUARANTINE_PATH=/quarantine/objects",
        "http_proxy=http://proxy:3128",
        "SECRET_OF_GIT=1",
        "PATH=/from/hook",
    ]
    result = await pre_receive(client, repo, env, push_options=("ci.skip", "x=y"))
    assert (result.exit_status, result.stderr) == (0, b"")
    stdin = CHANGES.decode().replace("\n", ";")
    assert runs(log_dir) == [
        f"pre-receive |{stdin}",
        f"10-a |{stdin}",
        f"20-b |{stdin}",
        f"00-global |{stdin}",
    ]
    hook_env = read_env(os.path.join(log_dir, "10-a.env"))
    git_dir = os.path.dirname(os.path.realpath(shutil.which("git") or ""))
    expected = {
        **EXPECTED_ENV,
        "GIT_DIR": path,
        "PWD": path,
        "PATH": f"{git_dir}:/from/hook",
    }
    assert {key: hook_env.get(key) for key in expected} == expected
    # Neither git's quarantine path nor anything else outside the allowlist leaks in.
    assert "GIT_QUARANTINE_PATH" not in hook_env
    assert "SECRET_OF_GIT" not in hook_env
    assert "GITALY_HOOKS_PAYLOAD" not in hook_env


async def test_failing_hook_stops_the_chain(client: Client, config: Config, log_dir: str) -> None:
    repo, path = bare_repository(config)
    recording = RECORDING_HOOK.format(log_dir=log_dir)
    write_hook(os.path.join(path, "custom_hooks", "pre-receive.d", "1"), recording)
    write_hook(
        os.path.join(path, "custom_hooks", "pre-receive.d", "2"),
        "#!/bin/sh\necho checking\necho 'custom hook error' >&2\nexit 128\n",
    )
    write_hook(os.path.join(path, "custom_hooks", "pre-receive.d", "3"), recording)
    result = await pre_receive(client, repo, [payload_env(repo)])
    assert (result.exit_status, result.stdout) == (128, b"checking\n")
    assert result.stderr == b"custom hook error\n"
    assert [line.split(" ")[0] for line in runs(log_dir)] == ["1"]


async def test_hook_that_cannot_start(client: Client, config: Config) -> None:
    repo, path = bare_repository(config)
    hook = write_hook(os.path.join(path, "custom_hooks", "post-receive"), "not a script\n")
    result = await pre_receive(client, repo, [payload_env(repo)], post=True)
    assert result.exit_status == 1
    assert result.stderr == f"executing custom hooks: fork/exec {hook}: exec format error".encode()


async def test_signalled_hook_reports_minus_one(client: Client, config: Config) -> None:
    repo, path = bare_repository(config)
    write_hook(os.path.join(path, "custom_hooks", "pre-receive"), "#!/bin/sh\nkill -9 $$\n")
    result = await pre_receive(client, repo, [payload_env(repo)])
    assert result.exit_status == -1


async def test_post_receive_runs_custom_hooks(client: Client, config: Config, log_dir: str) -> None:
    repo, path = bare_repository(config)
    write_hook(
        os.path.join(path, "custom_hooks", "post-receive"), RECORDING_HOOK.format(log_dir=log_dir)
    )
    result = await pre_receive(client, repo, [payload_env(repo)], post=True, push_options=("o",))
    assert (result.exit_status, result.stderr) == (0, b"")
    assert runs(log_dir) == [f"post-receive |{CHANGES.decode().replace(chr(10), ';')}"]
    env = read_env(os.path.join(log_dir, "post-receive.env"))
    assert (env["GIT_PUSH_OPTION_COUNT"], env["GIT_PUSH_OPTION_0"]) == ("1", "o")
    result = await pre_receive(client, repo, [payload_env(repo)], b"", post=True)
    assert (result.exit_status, result.stderr) == (1, b"hook got no reference updates")


async def test_output_streams_while_the_hook_runs(client: Client, config: Config) -> None:
    repo, path = bare_repository(config)
    write_hook(
        os.path.join(path, "custom_hooks", "post-receive"),
        "#!/bin/sh\necho one\nsleep 0.3\necho two >&2\nsleep 0.3\necho three\n",
    )
    result = await pre_receive(client, repo, [payload_env(repo)], post=True)
    assert (result.stdout, result.stderr, result.exit_status) == (b"one\nthree\n", b"two\n", 0)
    # Three writes, three messages, then the exit status.
    assert result.messages == 4


async def test_cancelled_rpc_kills_the_hook_group(
    client: Client, config: Config, log_dir: str, server: RunningServer
) -> None:
    repo, path = bare_repository(config)
    write_hook(
        os.path.join(path, "custom_hooks", "pre-receive"),
        f"#!/bin/sh\necho $$ > {log_dir}/hook.pid\n"
        f"sleep 300 &\necho $! > {log_dir}/child.pid\nwait\n",
    )
    with pytest.raises(grpc.RpcError) as info:
        await pre_receive(client, repo, [payload_env(repo)], timeout=1.0)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    pids = []
    for name in ("hook.pid", "child.pid"):
        with open(os.path.join(log_dir, name)) as f:
            pids.append(int(f.read()))
    with trio.move_on_after(1.0):
        while any(_alive(pid) for pid in pids):
            await trio.sleep(0.02)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # A zombie (state Z) has exited; only its parent's wait is missing.
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

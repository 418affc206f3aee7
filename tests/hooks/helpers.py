"""Helpers for hook tests: payloads, custom hook scripts, repositories, hook RPC calls."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from tests.helpers import Client, storage_path
from trio_gitaly.config import Config
from trio_gitaly.hooks.payload import PAYLOAD_ENV, Hook, HooksPayload, UserDetails
from trio_gitaly.rpc.gen.gitaly import hook_pb2, shared_pb2

USER = UserDetails(userid="key-42", username="jdoe", protocol="ssh", remote_ip="10.0.0.1")
ZERO = "0" * 40
OLD, NEW = "1" * 40, "2" * 40
CHANGES = f"{OLD} {NEW} refs/heads/main\n".encode()
SERVICE = "/gitaly.HookService/"

# A custom hook that records its name, arguments, stdin and environment in $LOG_DIR:
# `<name>.env` (env -0 output) and one line per run in `runs`.
RECORDING_HOOK = """#!/bin/sh
name=$(basename "$0")
env -0 > "{log_dir}/$name.env"
printf '%s %s|%s\\n' "$name" "$*" "$(cat | tr '\\n' ';')" >> "{log_dir}/runs"
"""


def bare_repository(config: Config, name: str = "repo.git") -> tuple[shared_pb2.Repository, str]:
    """A new empty bare repository in the test server's storage, and its path."""
    path = os.path.join(storage_path(config), name)
    subprocess.run(["git", "init", "-q", "--bare", path], check=True)
    repo = shared_pb2.Repository(
        storage_name="default",
        relative_path=name,
        gl_repository="project-1",
        gl_project_path="group/project",
    )
    return repo, path


def payload_env(
    repo: shared_pb2.Repository,
    *,
    socket: str = "/nonexistent/intern",
    user: UserDetails | None = USER,
    requested: Hook = Hook(0),  # noqa: B008 (an immutable flag value)
    object_format: str = "sha1",
    token: str = "",
) -> str:
    """The `GITALY_HOOKS_PAYLOAD=...` entry for a hook of `repo`."""
    payload = HooksPayload(
        repository=json_format.MessageToJson(repo, indent=None),
        requested_hooks=requested,
        object_format=object_format,
        runtime_dir=os.path.dirname(socket),
        internal_socket=socket,
        internal_socket_token=token,
        user_details=user,
    )
    return f"{PAYLOAD_ENV}={payload.encode()}"


def write_hook(path: str, script: str) -> str:
    """Write an executable script (creating directories); return its path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(script)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def read_env(path: str) -> dict[str, str]:
    """An `env -0` dump as a mapping."""
    with open(path, "rb") as f:
        entries = f.read().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if entry)


@dataclass
class HookResult:
    """A hook RPC's answers put together."""

    stdout: bytes
    stderr: bytes
    exit_status: int | None
    messages: int


def collect(responses: list[Any]) -> HookResult:
    """Join the stdout and stderr of hook responses; the last exit status wins."""
    status = None
    for response in responses:
        if response.HasField("exit_status"):
            status = response.exit_status.value
    return HookResult(
        b"".join(r.stdout for r in responses),
        b"".join(r.stderr for r in responses),
        status,
        len(responses),
    )


async def pre_receive(
    client: Client,
    repo: shared_pb2.Repository,
    env: list[str],
    stdin: bytes = CHANGES,
    *,
    push_options: tuple[str, ...] = (),
    post: bool = False,
    **kw: Any,
) -> HookResult:
    """Call PreReceiveHook (or PostReceiveHook) with stdin in two pieces."""
    request_type: Any = hook_pb2.PostReceiveHookRequest if post else hook_pb2.PreReceiveHookRequest
    response_type: Any = (
        hook_pb2.PostReceiveHookResponse if post else hook_pb2.PreReceiveHookResponse
    )
    half = len(stdin) // 2
    requests = [
        request_type(repository=repo, environment_variables=env, git_push_options=push_options),
        request_type(stdin=stdin[:half]),
        request_type(stdin=stdin[half:]),
    ]
    method = "PostReceiveHook" if post else "PreReceiveHook"
    responses = await client.stream(
        SERVICE + method, requests, response_type, client_streaming=True, **kw
    )
    return collect(responses)


async def update(
    client: Client, repo: shared_pb2.Repository, env: list[str], ref: bytes, old: str, new: str
) -> HookResult:
    """Call UpdateHook."""
    request = hook_pb2.UpdateHookRequest(
        repository=repo, environment_variables=env, ref=ref, old_value=old, new_value=new
    )
    responses = await client.stream(SERVICE + "UpdateHook", request, hook_pb2.UpdateHookResponse)
    return collect(responses)

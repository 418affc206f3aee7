"""Custom server hooks: found in Gitaly's order, run one after another, output streamed.

For hook `<name>` the candidates are `<repo>/custom_hooks/<name>`, then
`<repo>/custom_hooks/<name>.d/*`, then `<[hooks] custom_hooks_dir>/<name>.d/*` (each
directory in name order). Names ending in `~` and anything that is a directory or not
executable are skipped. Each hook runs with the repository as working directory, gets
the same stdin, and the first one to exit non-zero fails the hook; its output reaches
the client as it is written.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import trio

from trio_gitaly.git.process import (
    FIXED_ENVIRONMENT,
    INHERITED_ENVIRONMENT,
    READ_CHUNK_BYTES,
    REAP_TIMEOUT_S,
    feed_all,
    kill_process_group,
)
from trio_gitaly.goformat import go_strerror
from trio_gitaly.hooks.payload import UserDetails

#: Receives one chunk of a hook's stdout or stderr; waiting in it holds the hook back.
Sink = Callable[[bytes | bytearray], Awaitable[None]]

CUSTOM_HOOKS_DIR: Final = "custom_hooks"


@dataclass(frozen=True)
class HookOutput:
    """Where the hooks' output goes (the RPC's stdout and stderr messages)."""

    stdout: Sink
    stderr: Sink


class CustomHookExit(Exception):
    """A custom hook exited non-zero.

    Attributes:
        path: the hook.
        exit_status: its exit status; -1 when a signal ended it (Go's ExitCode).
    """

    def __init__(self, path: str, exit_status: int) -> None:
        super().__init__(f"error executing {path!r}: exit status {exit_status}")
        self.path = path
        self.exit_status = exit_status


class CustomHookError(Exception):
    """The hooks could not be listed or started; `str()` is the message for the client."""


def find_hooks(repo_path: str, hook_name: str, custom_hooks_dir: str) -> list[str]:
    """The custom hooks to run for `hook_name`, in order. Blocking: call from a thread.

    Raises:
        CustomHookError: a `<name>.d` directory exists but cannot be listed.
    """
    hooks = []
    own = os.path.join(repo_path, CUSTOM_HOOKS_DIR, hook_name)
    if _is_hook(own):
        hooks.append(own)
    hooks += _hooks_in(os.path.join(repo_path, CUSTOM_HOOKS_DIR, f"{hook_name}.d"))
    if custom_hooks_dir:
        hooks += _hooks_in(os.path.join(custom_hooks_dir, f"{hook_name}.d"))
    return hooks


def _hooks_in(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise CustomHookError(f"open {directory}: {go_strerror(exc)}") from exc
    # Go's ReadDir order: by the bytes of the name.
    names.sort(key=lambda name: os.fsencode(name))
    return [path for name in names if _is_hook(path := os.path.join(directory, name))]


def _is_hook(path: str) -> bool:
    if path.endswith("~"):
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISDIR(mode) and os.access(path, os.X_OK)


@dataclass(frozen=True)
class HookContext:
    """What a custom hook's environment is made of (Gitaly's customHooksEnv).

    Attributes:
        hook_env: the environment git gave the hook ("NAME=value"), as the RPC sent it.
        repo_path: the repository of the payload (GIT_DIR).
        object_dir, alternates: the payload repository's object directories, relative
            to it; used when git's environment names none.
        git_binary: the server's git; its directory goes first on PATH so that hooks
            run the same git.
    """

    hook_env: Sequence[str]
    repo_path: str
    gl_repository: str
    gl_project_path: str
    user: UserDetails
    object_dir: str
    alternates: Sequence[str]
    git_binary: str


def hook_environment(
    context: HookContext, push_options: Sequence[str], server_env: Mapping[str, str]
) -> dict[str, str]:
    """The environment custom hooks run with; later sources override earlier ones.

    The server's and the hook's allowed variables (proxies, HOME, GIT_TRACE...), the
    push options, the object directories, PATH with git's directory first, the fixed
    git variables, then GIT_DIR and the GL_* variables.
    """
    env = {name: server_env[name] for name in INHERITED_ENVIRONMENT if name in server_env}
    given = env_value_map(context.hook_env)
    env.update({name: value for name, value in given.items() if name in INHERITED_ENVIRONMENT})
    if push_options:
        env["GIT_PUSH_OPTION_COUNT"] = str(len(push_options))
        env.update({f"GIT_PUSH_OPTION_{i}": option for i, option in enumerate(push_options)})
    object_dir = given.get("GIT_OBJECT_DIRECTORY", "")
    if not object_dir and context.object_dir:
        object_dir = os.path.join(context.repo_path, context.object_dir)
    if object_dir:
        env["GIT_OBJECT_DIRECTORY"] = object_dir
    alternates = given.get("GIT_ALTERNATE_OBJECT_DIRECTORIES", "")
    if not alternates and context.alternates:
        alternates = ":".join(os.path.join(context.repo_path, alt) for alt in context.alternates)
    if alternates:
        env["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = alternates
    git_dir = os.path.dirname(context.git_binary)
    if git_dir:
        path = given.get("PATH") or server_env.get("PATH", "")
        env["PATH"] = f"{git_dir}:{path}"
    env.update(FIXED_ENVIRONMENT)
    env.update(
        GIT_DIR=context.repo_path,
        GL_REPOSITORY=context.gl_repository,
        GL_PROJECT_PATH=context.gl_project_path,
        GL_ID=context.user.userid,
        GL_USERNAME=context.user.username,
        GL_PROTOCOL=context.user.protocol,
    )
    return env


def env_value_map(environment: Sequence[str]) -> dict[str, str]:
    """An environment list ("NAME=value") as a mapping; the last setting wins (as Gitaly)."""
    values: dict[str, str] = {}
    for entry in environment:
        name, sep, value = entry.partition("=")
        if sep:
            values[name] = value
    return values


async def run_hooks(
    hooks: Sequence[str],
    *,
    args: Sequence[str],
    env: Mapping[str, str],
    stdin: bytes,
    cwd: str,
    output: HookOutput,
) -> None:
    """Run `hooks` one after another until one fails.

    Raises:
        CustomHookExit: a hook exited non-zero (later hooks did not run).
        CustomHookError: a hook could not be started.

    Cancellation:
        The running hook's process group is SIGKILLed and the hook reaped (shielded,
        bounded by `REAP_TIMEOUT_S`) before Cancelled propagates.
    """
    for hook in hooks:
        status = await _run_one(hook, args=args, env=env, stdin=stdin, cwd=cwd, output=output)
        if status != 0:
            raise CustomHookExit(hook, status)


async def _run_one(
    hook: str,
    *,
    args: Sequence[str],
    env: Mapping[str, str],
    stdin: bytes,
    cwd: str,
    output: HookOutput,
) -> int:
    try:
        process = await trio.lowlevel.open_process(
            [hook, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            # Its own group, so that cancelling kills whatever the hook started too.
            start_new_session=True,
        )
    except OSError as exc:
        raise CustomHookError(f"fork/exec {hook}: {go_strerror(exc)}") from exc
    except ValueError as exc:
        # A NUL byte in an argument or variable (Go's exec says EINVAL).
        raise CustomHookError(f"fork/exec {hook}: invalid argument") from exc
    # All three are pipes (requested above); the asserts tell the type checker.
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    finished = False
    try:
        # As Gitaly: done when the hook has exited and its output is read to the end.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed_all, process.stdin, stdin)
            nursery.start_soon(_pump, process.stdout, output.stdout)
            nursery.start_soon(_pump, process.stderr, output.stderr)
            returncode = await process.wait()
        finished = True
    finally:
        if not finished:
            await _kill(process)
    # A signal gives a negative returncode; Go reports -1 for every signal.
    return -1 if returncode < 0 else returncode


async def _kill(process: trio.Process) -> None:
    with trio.CancelScope(shield=True):
        # Even after the hook itself was reaped its pid names the group while any member
        # lives, so the kill cannot reach a stranger (see git/process.py).
        kill_process_group(process.pid)
        with trio.move_on_after(REAP_TIMEOUT_S):
            await process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                await trio.aclose_forcefully(stream)


async def _pump(stream: trio.abc.ReceiveStream, sink: Sink) -> None:
    async with stream:
        while chunk := await stream.receive_some(READ_CHUNK_BYTES):
            await sink(chunk)

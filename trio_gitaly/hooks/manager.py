"""What each hook does on the server (Gitaly's hook manager), apart from gRPC framing.

- pre-receive: GitLab's `/allowed`, the custom pre-receive hooks, `/pre_receive`.
- post-receive: `/post_receive` (its messages printed), the custom post-receive hooks.
- update: the custom update hooks.
- reference-transaction: checks the payload and accepts.

Without `[gitlab] url` the API calls are skipped, and so are the checks that exist only
to fill in their requests (gl_repository, user id, protocol): a standalone server
accepts whatever its custom hooks accept. Failures raise `HookError` with Gitaly's text,
or `CustomHookExit` when a custom hook said no.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Final

import trio
from google.protobuf import json_format

from trio_gitaly.errors import GitalyError
from trio_gitaly.git.refs import validate_object_id
from trio_gitaly.gitlab.client import AllowedParams, GitlabApiError, GitlabClient
from trio_gitaly.goformat import go_quote
from trio_gitaly.hooks.custom import (
    CustomHookError,
    HookContext,
    HookOutput,
    env_value_map,
    find_hooks,
    hook_environment,
    run_hooks,
)
from trio_gitaly.hooks.messages import InvalidMessageError, render_messages
from trio_gitaly.hooks.payload import PAYLOAD_ENV, HooksPayload, PayloadError, UserDetails
from trio_gitaly.rpc.gen.gitaly import shared_pb2
from trio_gitaly.storage.locator import Locator

OBJECT_FORMATS: Final = ("sha1", "sha256")


class HookError(Exception):
    """The hook fails; `str()` is Gitaly's message ("" for a silent refusal)."""


class HookManager:
    """Runs the server side of git's hooks for HookService.

    Args:
        locator: finds repositories.
        git_binary: the server's git (custom hooks find it first on PATH).
        gitlab: the internal API client; None when `[gitlab] url` is empty.
        custom_hooks_dir: `[hooks] custom_hooks_dir` ("" for none).
        server_env: the server's environment, for the variables custom hooks inherit.
    """

    def __init__(
        self,
        locator: Locator,
        *,
        git_binary: str,
        gitlab: GitlabClient | None,
        custom_hooks_dir: str,
        server_env: Mapping[str, str],
    ) -> None:
        self._locator = locator
        self._git_binary = git_binary
        self._gitlab = gitlab
        self._custom_hooks_dir = custom_hooks_dir
        self._server_env = dict(server_env)

    async def pre_receive(
        self,
        repo: shared_pb2.Repository,
        push_options: Sequence[str],
        env: Sequence[str],
        changes: bytes,
        output: HookOutput,
    ) -> None:
        """Check a push before any ref moves.

        Raises:
            HookError: the push is refused, or the hook could not run.
            CustomHookExit: a custom hook refused the push.

        Cancellation: a running custom hook is killed; the API call is abandoned.
        """
        payload, payload_repo = _payload(env)
        try:
            repo_path = self._locator.repo_path(repo)
        except GitalyError as exc:
            raise HookError(f"getting repo path: {exc.message}") from None
        object_dir, alternates = _object_dirs_for_api(repo, repo_path, env)
        if not changes:
            raise HookError("hook got no reference updates")
        user = self._pusher(repo, payload, pre_receive=True)
        text = changes.decode("utf-8", "replace")
        if self._gitlab is not None:
            params = AllowedParams(
                repo_path=repo_path,
                relative_path=repo.relative_path,
                git_object_directory=object_dir,
                git_alternate_object_directories=alternates,
                gl_repository=repo.gl_repository,
                gl_id=user.userid,
                gl_protocol=user.protocol,
                changes=text,
                push_options=tuple(push_options),
            )
            try:
                allowed, message = await self._gitlab.allowed(params)
            except GitlabApiError as exc:
                raise HookError(f"GitLab: {exc}") from exc
            if not allowed:
                raise HookError(f"GitLab: {message}")
        await self._run_custom(
            "pre-receive", repo, payload, payload_repo, push_options, env, changes, output
        )
        if self._gitlab is not None:
            try:
                increased = await self._gitlab.pre_receive(repo.gl_repository)
            except GitlabApiError as exc:
                raise HookError(f"calling pre_receive endpoint: {exc}") from exc
            if not increased:
                raise HookError("")

    async def post_receive(
        self,
        repo: shared_pb2.Repository,
        push_options: Sequence[str],
        env: Sequence[str],
        changes: bytes,
        output: HookOutput,
    ) -> None:
        """Report a finished push to GitLab, show its messages, run the custom hooks.

        Raises, Cancellation: as `pre_receive`.
        """
        payload, payload_repo = _payload(env)
        if not changes:
            raise HookError("hook got no reference updates")
        user = self._pusher(repo, payload, pre_receive=False)
        if self._gitlab is not None:
            try:
                decreased, messages = await self._gitlab.post_receive(
                    repo.gl_repository,
                    user.userid,
                    changes.decode("utf-8", "replace"),
                    tuple(push_options),
                )
            except GitlabApiError as exc:
                raise HookError(f"GitLab: {exc}") from exc
            try:
                text = render_messages(messages)
            except InvalidMessageError as exc:
                await output.stdout(exc.rendered)
                raise HookError(f"error writing messages to stream: {exc}") from None
            if text:
                await output.stdout(text)
            if not decreased:
                raise HookError("")
        await self._run_custom(
            "post-receive", repo, payload, payload_repo, push_options, env, changes, output
        )

    async def update(
        self,
        repo: shared_pb2.Repository,
        ref: bytes,
        old_value: str,
        new_value: str,
        env: Sequence[str],
        output: HookOutput,
    ) -> None:
        """Run the custom update hooks for one ref (`<ref> <old> <new>`).

        Raises, Cancellation: as `pre_receive`.
        """
        payload, payload_repo = _payload(env)
        object_format = _object_format(payload)
        if not ref:
            raise HookError("hook got no reference")
        for name, value in (("old", old_value), ("new", new_value)):
            try:
                validate_object_id(value, object_format)
            except GitalyError as exc:
                raise HookError(f"hook got invalid {name} value: {exc.message}") from None
        if payload.user_details is None:
            raise HookError("payload has no receive hooks info")
        await self._run_custom(
            "update",
            repo,
            payload,
            payload_repo,
            (),
            env,
            b"",
            output,
            args=(os.fsdecode(ref), old_value, new_value),
            executor_prefix="",
        )

    def check_reference_transaction(self, env: Sequence[str]) -> None:
        """Accept a reference-transaction state after checking the payload.

        Raises:
            HookError: the payload is missing or malformed, or names no known format.
        """
        payload, _ = _payload(env)
        _object_format(payload)

    def _pusher(
        self, repo: shared_pb2.Repository, payload: HooksPayload, *, pre_receive: bool
    ) -> UserDetails:
        """The pushing user, after Gitaly's checks in Gitaly's order for each hook."""
        api = self._gitlab is not None
        if api and pre_receive and not repo.gl_repository:
            raise HookError("repository not set")
        user = payload.user_details
        if user is None:
            raise HookError("payload has no receive hooks info")
        if api:
            if not user.userid:
                raise HookError("user ID not set")
            if pre_receive and not user.protocol:
                raise HookError("protocol not set")
            if not pre_receive and not repo.gl_repository:
                raise HookError("repository not set")
        return user

    async def _run_custom(
        self,
        hook_name: str,
        repo: shared_pb2.Repository,
        payload: HooksPayload,
        payload_repo: shared_pb2.Repository,
        push_options: Sequence[str],
        env: Sequence[str],
        stdin: bytes,
        output: HookOutput,
        *,
        args: Sequence[str] = (),
        executor_prefix: str = "creating custom hooks executor: ",
    ) -> None:
        """Find and run the custom hooks `hook_name` of `repo` and the server."""
        try:
            repo_path = self._locator.repo_path(repo)
            hooks = await trio.to_thread.run_sync(
                find_hooks, repo_path, hook_name, self._custom_hooks_dir
            )
        except GitalyError as exc:
            raise HookError(executor_prefix + exc.message) from None
        except CustomHookError as exc:
            raise HookError(f"{executor_prefix}{exc}") from exc
        try:
            # GIT_DIR and GL_* describe the payload's repository, as in Gitaly.
            payload_path = self._locator.repo_path(payload_repo, must_exist=False)
        except GitalyError as exc:
            raise HookError(f"constructing custom hook environment: {exc.message}") from None
        context = HookContext(
            hook_env=env,
            repo_path=payload_path,
            gl_repository=payload_repo.gl_repository,
            gl_project_path=payload_repo.gl_project_path,
            user=payload.user_details or UserDetails(),
            object_dir=payload_repo.git_object_directory,
            alternates=tuple(payload_repo.git_alternate_object_directories),
            git_binary=self._git_binary,
        )
        hook_env = hook_environment(context, push_options, self._server_env)
        try:
            await run_hooks(
                hooks, args=args, env=hook_env, stdin=stdin, cwd=repo_path, output=output
            )
        except CustomHookError as exc:
            raise HookError(f"executing custom hooks: {exc}") from exc


def _payload(env: Sequence[str]) -> tuple[HooksPayload, shared_pb2.Repository]:
    """The payload among the hook's environment variables, and its repository."""
    prefix = PAYLOAD_ENV + "="
    value = next((entry[len(prefix) :] for entry in env if entry.startswith(prefix)), None)
    if value is None:
        raise HookError("extracting hooks payload: no hooks payload found in environment")
    try:
        payload = HooksPayload.decode(value)
        repository = json_format.Parse(payload.repository, shared_pb2.Repository())
    except (PayloadError, json_format.ParseError) as exc:
        raise HookError(f"extracting hooks payload: {exc}") from None
    return payload, repository


def _object_format(payload: HooksPayload) -> str:
    if payload.object_format not in OBJECT_FORMATS:
        raise HookError(
            f"looking up object hash: unknown object format: {go_quote(payload.object_format)}"
        )
    return payload.object_format


def _object_dirs_for_api(
    repo: shared_pb2.Repository, repo_path: str, env: Sequence[str]
) -> tuple[str, tuple[str, ...]]:
    """The object directories `/allowed` is told about, relative to the repository.

    git's quarantine when the hook's environment names it (GitLab's access checks then
    call back with it), else the request's own.
    """
    given = env_value_map(env)
    quarantine = given.get("GIT_OBJECT_DIRECTORY")
    shared = given.get("GIT_ALTERNATE_OBJECT_DIRECTORIES")
    if quarantine and shared:
        return _relative_object_dirs(repo_path, quarantine, shared)
    return repo.git_object_directory, tuple(repo.git_alternate_object_directories)


def _relative_object_dirs(
    repo_path: str, object_dir: str, alternates: str
) -> tuple[str, tuple[str, ...]]:
    """git's quarantine directories relative to the repository's real path (Gitaly's)."""
    base = os.path.realpath(repo_path)
    relative = []
    for path in (object_dir, *alternates.split(":")):
        # Go's filepath.Rel refuses to relate a relative path to an absolute one.
        if not os.path.isabs(path):
            raise HookError(
                "getting relative git object directories: "
                f"Rel: can't make {path} relative to {base}"
            )
        relative.append(os.path.relpath(path, base))
    return relative[0], tuple(relative[1:])

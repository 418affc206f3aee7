"""gitaly.HookService: what git's hooks ask while receive-pack takes a push.

Our hook entry point (trio_gitaly.hooks) calls these over the internal socket with the
hook's environment, which carries the payload. The work is done by
`trio_gitaly.hooks.manager`; here requests are validated (Gitaly's codes) and answers
streamed: custom hooks' output as it is written, then one message with the exit status.
A refusal is not an RPC error: pre- and post-receive answer exit status 1 with the
reason on stderr, as Gitaly does, so that git shows it to the pusher.
PackObjectsHookWithSidechannel and ProcReceiveHook are not served (UNIMPLEMENTED).
"""

from __future__ import annotations

import os
from typing import Any

import trio
from google.protobuf.message import Message

from trio_gitaly import __version__
from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.gitlab.client import GitlabClient
from trio_gitaly.hooks.custom import CustomHookExit, HookOutput
from trio_gitaly.hooks.manager import HookError, HookManager
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import hook_pb2, shared_pb2
from trio_gitaly.rpc.services import Dependencies, ServiceBase

# ReferenceTransactionHookRequest.State values (PREPARED, COMMITTED, ABORTED).
_TRANSACTION_STATES = frozenset(hook_pb2.ReferenceTransactionHookRequest.State.values())


class HookService(ServiceBase):
    """HookService's four hook RPCs."""

    def __init__(self, deps: Dependencies) -> None:
        super().__init__(deps)
        gitlab = (
            GitlabClient(deps.gitlab, user_agent=f"gitaly/{__version__}")
            if deps.gitlab.url
            else None
        )
        self._manager = HookManager(
            deps.locator,
            git_binary=deps.git_binary.path,
            gitlab=gitlab,
            custom_hooks_dir=deps.hooks_config.custom_hooks_dir,
            server_env=os.environ,
        )

    async def PreReceiveHook(
        self, request: hook_pb2.PreReceiveHookRequest | None, call: ServerCall
    ) -> None:
        """Check a push: GitLab's access checks and the custom pre-receive hooks.

        Cancellation: a running custom hook is killed, an API request abandoned.
        """
        await self._receive_hook(
            request, call, hook_pb2.PreReceiveHookResponse, self._manager.pre_receive,
            eof="receiving first request: EOF",
        )  # fmt: skip

    async def PostReceiveHook(
        self, request: hook_pb2.PostReceiveHookRequest | None, call: ServerCall
    ) -> None:
        """Report a push to GitLab, print its messages, run the custom post-receive hooks.

        Cancellation: as PreReceiveHook.
        """
        await self._receive_hook(
            request, call, hook_pb2.PostReceiveHookResponse, self._manager.post_receive, eof="EOF"
        )

    async def _receive_hook(
        self,
        request: hook_pb2.PreReceiveHookRequest | hook_pb2.PostReceiveHookRequest | None,
        call: ServerCall,
        response_type: Any,
        run: Any,
        *,
        eof: str,
    ) -> None:
        """pre- and post-receive: read the changes, run the hook, answer its exit status."""
        if request is None:
            raise GitalyError(StatusCode.INTERNAL, eof)
        self._validate(request.repository)
        changes = await _read_stdin(call)
        answer = _Answer(call, response_type)
        try:
            await run(
                request.repository,
                list(request.git_push_options),
                list(request.environment_variables),
                changes,
                answer.output,
            )
        except CustomHookExit as exc:
            await answer.finish(exc.exit_status)
        except HookError as exc:
            await answer.finish(1, str(exc))
        else:
            await answer.finish(0)

    async def UpdateHook(self, request: hook_pb2.UpdateHookRequest, call: ServerCall) -> None:
        """Run the custom update hooks for one ref.

        Errors other than a hook's refusal are INTERNAL (Gitaly's rule for this RPC).
        Cancellation: as PreReceiveHook.
        """
        self._validate(request.repository)
        answer = _Answer(call, hook_pb2.UpdateHookResponse)
        try:
            await self._manager.update(
                request.repository,
                request.ref,
                request.old_value,
                request.new_value,
                list(request.environment_variables),
                answer.output,
            )
        except CustomHookExit as exc:
            await answer.finish(exc.exit_status)
        except HookError as exc:
            raise GitalyError(StatusCode.INTERNAL, str(exc)) from None
        else:
            await answer.finish(0)

    async def ReferenceTransactionHook(
        self, request: hook_pb2.ReferenceTransactionHookRequest | None, call: ServerCall
    ) -> None:
        """Accept a reference transaction (prepared, committed or aborted).

        Cancellation: nothing to undo.
        """
        if request is None:
            raise GitalyError(StatusCode.INTERNAL, "receiving first request: EOF")
        self._validate(request.repository)
        if request.state not in _TRANSACTION_STATES:
            raise GitalyError(StatusCode.INVALID_ARGUMENT, "invalid hook state")
        try:
            self._manager.check_reference_transaction(list(request.environment_variables))
        except HookError as exc:
            raise GitalyError(StatusCode.INTERNAL, f"reference-transaction hook: {exc}") from None
        await _read_stdin(call)
        await call.send(
            hook_pb2.ReferenceTransactionHookResponse(exit_status=shared_pb2.ExitStatus(value=0))
        )

    def _validate(self, repository: shared_pb2.Repository) -> None:
        """Gitaly's ValidateRepository, answered INVALID_ARGUMENT unless more specific."""
        try:
            self._deps.locator.repo_path(repository)
        except GitalyError as exc:
            if exc.code is StatusCode.UNKNOWN:
                raise GitalyError(StatusCode.INVALID_ARGUMENT, exc.message) from None
            raise


async def _read_stdin(call: ServerCall) -> bytes:
    """The rest of the request stream's stdin (the hook's input is a few lines per ref).

    Cancellation: raises Cancelled; what was read is dropped.
    """
    data = bytearray()
    while (message := await call.receive()) is not None:
        data += message.stdin
    return bytes(data)


class _Answer:
    """Sends one hook RPC's answers; output chunks and the final status never interleave."""

    def __init__(self, call: ServerCall, response_type: Any) -> None:
        self._call = call
        self._type = response_type
        self._lock = trio.Lock()
        self.output = HookOutput(stdout=self._stdout, stderr=self._stderr)

    async def _stdout(self, chunk: bytes | bytearray) -> None:
        await self._send(self._type(stdout=bytes(chunk)))

    async def _stderr(self, chunk: bytes | bytearray) -> None:
        await self._send(self._type(stderr=bytes(chunk)))

    async def finish(self, exit_status: int, stderr: str = "") -> None:
        """Send the last message: the exit status, and the failure's message if any."""
        await self._send(
            self._type(
                exit_status=shared_pb2.ExitStatus(value=exit_status),
                stderr=stderr.encode(),
            )
        )

    async def _send(self, message: Message) -> None:
        async with self._lock:
            await self._call.send(message)

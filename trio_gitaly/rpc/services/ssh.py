"""gitaly.SSHService: git's pack protocols for SSH front ends (gitlab-shell, `trio-gitaly ssh`).

Each RPC carries git's stdin in request messages and its stdout, stderr and exit status
in responses. As in Gitaly, success ends the stream without an exit status; a failing git
sends its exit status, then the call ends with INTERNAL (CANCELLED when the client hung
up), in Gitaly's words.
"""

from __future__ import annotations

from typing import Any

from trio_gitaly.errors import GitalyError, StatusCode, invalid_argument
from trio_gitaly.goformat import go_quote
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import shared_pb2, ssh_pb2
from trio_gitaly.rpc.pack_streams import (
    RequestBytes,
    ResponseWriter,
    receive_pack_hooks,
    remote_ip,
    target,
)
from trio_gitaly.rpc.repo import Repo, open_repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.transport.commands import (
    HUNG_UP,
    Target,
    receive_pack,
    upload_archive,
    upload_pack,
)
from trio_gitaly.transport.session import Outcome


class SSHService(ServiceBase):
    """upload-pack, receive-pack and upload-archive over a bidirectional stream."""

    async def SSHUploadPack(self, request: ssh_pb2.SSHUploadPackRequest, call: ServerCall) -> None:
        """A clone or fetch; stdin after the first message, stdout/stderr back."""
        repo = self._first_request(request, "non-empty stdin in first request")
        out = ResponseWriter(call, ssh_pb2.SSHUploadPackResponse)
        async with self._deps.limits.pack_objects_slot(remote_ip(call), call.fields):
            outcome = await upload_pack(
                self._deps.git,
                target(repo, request),
                stdin=RequestBytes(call, "stdin"),
                stdout=out.sink("stdout"),
                stderr=out.sink("stderr"),
                stateless=False,
            )
        await _finish(out, ssh_pb2.SSHUploadPackResponse, "upload-pack", outcome)

    async def SSHReceivePack(
        self, request: ssh_pb2.SSHReceivePackRequest, call: ServerCall
    ) -> None:
        """A push, with the hooks; the first message names the pushing user (gl_id)."""
        if not request.gl_id:
            raise invalid_argument("empty GlId")
        repo = self._first_request(request, "non-empty data in first request")
        hooks = await receive_pack_hooks(self._deps, request, repo, call, protocol="ssh")
        out = ResponseWriter(call, ssh_pb2.SSHReceivePackResponse)
        outcome = await receive_pack(
            self._deps.git,
            target(repo, request),
            hooks,
            stdin=RequestBytes(call, "stdin"),
            stdout=out.sink("stdout"),
            stderr=out.sink("stderr"),
            stateless=False,
        )
        await _finish(out, ssh_pb2.SSHReceivePackResponse, "receive-pack", outcome)

    async def SSHUploadArchive(
        self, request: ssh_pb2.SSHUploadArchiveRequest, call: ServerCall
    ) -> None:
        """`git archive --remote`: the archive arguments in, the archive out."""
        repo = self._first_request(request, "non-empty stdin in first request")
        out = ResponseWriter(call, ssh_pb2.SSHUploadArchiveResponse)
        outcome = await upload_archive(
            self._deps.git,
            Target(repo.path, repo.env()),
            stdin=RequestBytes(call, "stdin"),
            stdout=out.sink("stdout"),
            stderr=out.sink("stderr"),
        )
        # upload-archive reports every outcome, success included (as Gitaly).
        await out.send(
            ssh_pb2.SSHUploadArchiveResponse(
                exit_status=shared_pb2.ExitStatus(value=outcome.returncode)
            )
        )
        if outcome.returncode != 0:
            raise _failure("upload-archive", outcome)

    def _first_request(self, request: Any, stdin_error: str) -> Repo:
        repo = open_repo(self._deps.locator, request.repository)
        if request.stdin:
            raise invalid_argument(stdin_error)
        return repo


async def _finish(out: ResponseWriter, response: Any, command: str, outcome: Outcome) -> None:
    if outcome.returncode == 0:
        return
    await out.send(response(exit_status=shared_pb2.ExitStatus(value=outcome.returncode)))
    raise _failure(command, outcome)


def _failure(command: str, outcome: Outcome) -> GitalyError:
    """The error ending the call of a git that failed, worded as Gitaly words it."""
    wait = f"cmd wait: exit status {outcome.returncode}"
    stderr = go_quote(outcome.stderr)
    if outcome.stderr == HUNG_UP:
        # The client went away: not the server's failure.
        if command == "receive-pack":
            return GitalyError(StatusCode.CANCELLED, "user canceled the push")
        return GitalyError(StatusCode.CANCELLED, f"running {command}: user canceled the request")
    if command == "upload-pack":
        return GitalyError(StatusCode.INTERNAL, f"running upload-pack: {wait}, stderr: {stderr}")
    if command == "upload-archive":
        return GitalyError(StatusCode.INTERNAL, f"send: {wait}, stderr: {stderr}")
    return GitalyError(StatusCode.INTERNAL, wait)

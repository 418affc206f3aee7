"""gitaly.SmartHTTPService: git's smart HTTP protocol for HTTP front ends (Workhorse).

The ref advertisements and the push; the upload-pack POST travels on a sidechannel
(PostUploadPackWithSidechannel), which is not served yet, so it answers UNIMPLEMENTED.
The upload-pack advertisement is served from the disk cache when it may be; pushes end
its generation through the cache invalidation middleware.
"""

from __future__ import annotations

from trio_gitaly.errors import GitalyError, StatusCode, invalid_argument
from trio_gitaly.rpc.call import ServerCall
from trio_gitaly.rpc.gen.gitaly import smarthttp_pb2
from trio_gitaly.rpc.pack_streams import (
    RequestBytes,
    ResponseWriter,
    receive_pack_hooks,
    target,
)
from trio_gitaly.rpc.repo import open_repo
from trio_gitaly.rpc.services import ServiceBase
from trio_gitaly.storage.diskcache_keys import CacheKey
from trio_gitaly.transport.cached_refs import advertise_upload_pack
from trio_gitaly.transport.commands import advertise_refs, receive_pack


class SmartHTTPService(ServiceBase):
    """info/refs bodies and git-receive-pack, as data chunks."""

    async def InfoRefsUploadPack(
        self, request: smarthttp_pb2.InfoRefsRequest, call: ServerCall
    ) -> None:
        """The body of GET info/refs?service=git-upload-pack, cached (transport/cached_refs.py)."""
        repo = open_repo(self._deps.locator, request.repository)
        out = ResponseWriter(call, smarthttp_pb2.InfoRefsResponse)
        key = CacheKey(request.repository, call.method.full_name, request.SerializeToString())
        await advertise_upload_pack(
            self._deps.git, self._deps.diskcache, target(repo, request), key, out.sink("data")
        )

    async def InfoRefsReceivePack(
        self, request: smarthttp_pb2.InfoRefsRequest, call: ServerCall
    ) -> None:
        """The body of GET info/refs?service=git-receive-pack (no hooks run)."""
        repo = open_repo(self._deps.locator, request.repository)
        out = ResponseWriter(call, smarthttp_pb2.InfoRefsResponse)
        await advertise_refs(
            self._deps.git, target(repo, request), "receive-pack", out.sink("data")
        )

    async def PostReceivePack(
        self, request: smarthttp_pb2.PostReceivePackRequest, call: ServerCall
    ) -> None:
        """POST git-receive-pack: the request body in, the response body out; runs hooks."""
        if not request.gl_id:
            raise invalid_argument("empty GlId")
        if request.data:
            raise invalid_argument("non-empty Data")
        repo = open_repo(self._deps.locator, request.repository)
        hooks = await receive_pack_hooks(self._deps, request, repo, call, protocol="http")
        out = ResponseWriter(call, smarthttp_pb2.PostReceivePackResponse)
        outcome = await receive_pack(
            self._deps.git,
            target(repo, request),
            hooks,
            stdin=RequestBytes(call, "data"),
            stdout=out.sink("data"),
            stderr=None,
            stateless=True,
        )
        if outcome.returncode != 0:
            raise GitalyError(
                StatusCode.FAILED_PRECONDITION,
                f"waiting for receive-pack: exit status {outcome.returncode}",
            )

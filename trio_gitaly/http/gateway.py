"""The HTTP gateway: git's smart HTTP protocol at /<storage>/<relative_path>, no gRPC hop.

    GET  /<storage>/<relative_path>/info/refs?service=git-upload-pack|git-receive-pack
    POST /<storage>/<relative_path>/git-upload-pack
    POST /<storage>/<relative_path>/git-receive-pack

The repository is located as an RPC's would be (storage name + relative path, the
Locator's rules), and the requests drive the same transport functions as SmartHTTPService,
with git http-backend's headers (content types, no caching, 415 for a wrong request type).
The protocol version comes from the `Git-Protocol` header; `Content-Encoding: gzip`
bodies (git compresses large negotiations) are inflated as they stream.

Who pushes: with `[gateway.basic_auth]` on, GL_ID is "username-<user>" and GL_USERNAME
the user (GitLab's username form of a GL_ID); with it off, every request is anonymous:
GL_ID `ANONYMOUS_GL_ID` and no GL_USERNAME. The hooks' repository has no gl_repository
or gl_project_path: the gateway does not know GitLab's project for a path.

Limits apply as if GitLab's Workhorse had made the RPCs it makes for each request
(`GATEWAY_RPCS`), so one `[[concurrency]]` entry bounds both ways in; upload-pack also
takes a pack-objects slot for the client's IP. A refused request gets 429 and Gitaly's
message. A push holds a disk cache lease as PostReceivePack would (storage/diskcache.py).
Advertisements are not cached here: repositories served this way are also changed on
disk directly, which no lease sees, and a cached answer would hide that for an hour.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final, Literal

import trio
from google.protobuf import json_format

from trio_gitaly.config import GatewayBasicAuth
from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.git.command import CommandFactory
from trio_gitaly.hooks.install import HookSetup
from trio_gitaly.hooks.payload import UserDetails
from trio_gitaly.http.app import Receive, Scope, Send, lifespan
from trio_gitaly.http.gateway_io import Headers, RequestBody, ResponseBody, send_text
from trio_gitaly.limits.server_limits import ServerLimits
from trio_gitaly.rpc.gen.gitaly import shared_pb2
from trio_gitaly.rpc.repo import Repo, open_repo
from trio_gitaly.storage.diskcache import DiskCache
from trio_gitaly.storage.locator import Locator
from trio_gitaly.transport.commands import (
    Service,
    Target,
    advertise_refs,
    receive_pack,
    upload_pack,
)
from trio_gitaly.transport.push_hooks import push_hooks
from trio_gitaly.transport.session import Outcome

LOG = logging.getLogger("trio_gitaly.gateway")

#: GL_ID of a push without basic auth. GitLab's user ids start at 1, so its internal API
#: finds no user for it (a push is refused there), and no real user can be impersonated.
ANONYMOUS_GL_ID: Final = "user-0"
#: The GL_ID prefix of a user known by name (Gitaly's "username-<name>").
USERNAME_GL_ID_PREFIX: Final = "username-"
#: GL_PROTOCOL of gateway pushes.
HOOKS_PROTOCOL: Final = "http"
REALM: Final = "trio-gitaly"

_INFO_REFS: Final = "/info/refs"
_SERVICES: Final[dict[str, Service]] = {
    "git-upload-pack": "upload-pack",
    "git-receive-pack": "receive-pack",
}
#: The RPC whose `[[concurrency]]` limit a gateway request is under, by (action, service).
GATEWAY_RPCS: Final[dict[tuple[str, Service], str]] = {
    ("info/refs", "upload-pack"): "/gitaly.SmartHTTPService/InfoRefsUploadPack",
    ("info/refs", "receive-pack"): "/gitaly.SmartHTTPService/InfoRefsReceivePack",
    ("upload-pack", "upload-pack"): "/gitaly.SmartHTTPService/PostUploadPackWithSidechannel",
    ("receive-pack", "receive-pack"): "/gitaly.SmartHTTPService/PostReceivePack",
}
# What git http-backend inflates; anything else is refused.
_ENCODINGS: Final = ("", "gzip", "x-gzip")
Action = Literal["info/refs", "upload-pack", "receive-pack"]


@dataclass(frozen=True)
class Route:
    """What a request path names."""

    storage: str
    relative_path: str
    action: Action


def parse_route(path: str) -> Route | None:
    """Split `/<storage>/<relative_path>/<action>`; None if the path is not a git URL."""
    action: Action
    if path.endswith(_INFO_REFS):
        prefix, action = path[: -len(_INFO_REFS)], "info/refs"
    else:
        prefix, _, last = path.rpartition("/")
        service = _SERVICES.get(last)
        if service is None:
            return None
        action = service
    storage, _, relative_path = prefix.lstrip("/").partition("/")
    if not storage or not relative_path:
        return None
    return Route(storage, relative_path, action)


class _Refusal(Exception):
    """A request answered with a short text before git runs."""

    def __init__(self, status: int, text: str, headers: Headers = ()) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers


@dataclass(frozen=True)
class _Request:
    """A request that may run git: where, which command, as whom."""

    action: Action
    repository: shared_pb2.Repository
    repo: Repo
    service: Service
    target: Target
    user: str  # "" when basic auth is off
    headers: dict[str, str]


class Gateway:
    """The ASGI application of the gateway listener."""

    def __init__(
        self,
        locator: Locator,
        git: CommandFactory,
        hooks: HookSetup,
        auth: GatewayBasicAuth,
        limits: ServerLimits,
        cache: DiskCache,
    ) -> None:
        self._locator = locator
        self._cache = cache
        self._git = git
        self._hooks = hooks
        self._auth = auth
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request. Cancellation (only at server stop): git is killed."""
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        start = time.perf_counter()
        fields: dict[str, Any] = {"method": scope["method"], "path": scope["path"]}
        try:
            request = self._accept(scope)
        except _Refusal as refusal:
            await send_text(send, refusal.status, refusal.text, refusal.headers)
            status = refusal.status
        else:
            if request.action == "info/refs":
                status = await self._advertise(request, receive, send, fields)
            else:
                status = await self._post(request, scope, receive, send, fields)
        fields["status"] = status  # 499: the client went away
        fields["duration_ms"] = round((time.perf_counter() - start) * 1000, 3)
        LOG.info("gateway request", extra={"fields": fields})

    def _accept(self, scope: Scope) -> _Request:
        """Check the request as git http-backend would, then locate its repository.

        Raises:
            _Refusal: what to answer instead (404, 405, 401, 403, 415, 400).
        """
        route = parse_route(scope["path"])
        if route is None:
            raise _Refusal(404, "not found\n")
        allowed = "GET" if route.action == "info/refs" else "POST"
        if scope["method"] != allowed:
            raise _Refusal(405, "method not allowed\n", [(b"allow", allowed.encode())])
        headers = _headers(scope)
        user = self._authenticate(headers.get("authorization", ""))
        if user is None:
            challenge = f'Basic realm="{REALM}", charset="UTF-8"'.encode()
            raise _Refusal(401, "authentication required\n", [(b"www-authenticate", challenge)])
        service = self._service(route, scope)
        if service is None:
            raise _Refusal(403, "unsupported service\n")
        if route.action != "info/refs":
            expected = f"application/x-git-{service}-request"
            received = headers.get("content-type", "")
            if received != expected:
                raise _Refusal(
                    415,
                    f"Expected POST with Content-Type '{expected}', "
                    f"but received '{received}' instead.\n",
                )
            if headers.get("content-encoding", "") not in _ENCODINGS:
                raise _Refusal(415, "unsupported content encoding\n")
        repository = shared_pb2.Repository(
            storage_name=route.storage, relative_path=route.relative_path
        )
        try:
            repo = self._open(repository)
        except GitalyError as exc:
            raise _Refusal(_repo_status(exc.code), f"{exc.message}\n") from None
        target = Target(repo.path, repo.env(), git_protocol=headers.get("git-protocol", ""))
        return _Request(route.action, repository, repo, service, target, user, headers)

    async def _advertise(
        self, request: _Request, receive: Receive, send: Send, fields: dict[str, Any]
    ) -> int:
        body = RequestBody(receive, gzip=False)
        body.release()  # a GET has no body to give git
        service = request.service
        response = ResponseBody(send, f"application/x-git-{service}-advertisement")

        async def run() -> Outcome | None:
            async with self._rpc_slot(request, fields):
                await advertise_refs(self._git, request.target, service, response.write)
            return None

        return await _exchange(send, body, response, run, what=f"{service} advertisement")

    async def _post(
        self, request: _Request, scope: Scope, receive: Receive, send: Send, fields: dict[str, Any]
    ) -> int:
        body = RequestBody(receive, gzip=bool(request.headers.get("content-encoding")))
        service = request.service
        response = ResponseBody(send, f"application/x-git-{service}-result")
        client = scope["client"][0] if scope.get("client") else ""

        async def run() -> Outcome | None:
            async with self._rpc_slot(request, fields):
                if service == "upload-pack":
                    async with self._limits.pack_objects_slot(client, fields):
                        return await upload_pack(
                            self._git,
                            request.target,
                            stdin=body,
                            stdout=response.write,
                            stderr=None,
                            stateless=True,
                        )
                return await push()

        async def push() -> Outcome:
            user = request.user
            hooks = await push_hooks(
                self._hooks,
                self._git,
                repository_json=json_format.MessageToJson(request.repository, indent=None),
                repo_path=request.repo.path,
                user=UserDetails(
                    userid=USERNAME_GL_ID_PREFIX + user if user else ANONYMOUS_GL_ID,
                    username=user,
                    protocol=HOOKS_PROTOCOL,
                    remote_ip=client,
                ),
            )
            rpc = GATEWAY_RPCS[request.action, service]
            async with self._cache.leased(request.repository, rpc):
                return await receive_pack(
                    self._git,
                    request.target,
                    hooks,
                    stdin=body,
                    stdout=response.write,
                    stderr=None,
                    stateless=True,
                )

        return await _exchange(send, body, response, run, what=service)

    def _rpc_slot(
        self, request: _Request, fields: dict[str, Any]
    ) -> AbstractAsyncContextManager[None]:
        rpc = GATEWAY_RPCS[request.action, request.service]
        return self._limits.rpc_slot(rpc, request.repository.relative_path, fields)

    def _authenticate(self, authorization: str) -> str | None:
        """The user name ("" when auth is off), or None if the credentials do not match."""
        if not self._auth.username:
            return ""
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except binascii.Error:
            return None
        username, sep, password = decoded.partition(b":")
        # Both compared, always: the time taken must not tell which one was wrong.
        user_ok = hmac.compare_digest(username, self._auth.username.encode())
        password_ok = hmac.compare_digest(password, self._auth.password.encode())
        if not (sep and user_ok and password_ok):
            return None
        return self._auth.username

    def _service(self, route: Route, scope: Scope) -> Service | None:
        if route.action != "info/refs":
            return route.action
        query = urllib.parse.parse_qs(scope["query_string"].decode("latin-1"))
        return _SERVICES.get(query.get("service", [""])[0])

    def _open(self, repository: shared_pb2.Repository) -> Repo:
        if repository.storage_name not in {s.name for s in self._locator.storages}:
            raise GitalyError(StatusCode.NOT_FOUND, "storage not found")
        return open_repo(self._locator, repository)


async def _exchange(
    send: Send,
    body: RequestBody,
    response: ResponseBody,
    run: Callable[[], Awaitable[Outcome | None]],
    *,
    what: str,
) -> int:
    """Run the git session with the client's body and send its output; return the status.

    A client that disconnects cancels the session (git is killed). A failure before any
    output is an error response; after it, the body just ends.
    """
    error: GitalyError | None = None
    outcome: Outcome | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(body.watch)
        with body.session:
            try:
                outcome = await run()
            except GitalyError as exc:
                error = exc
        body.release()
        error = body.failure or error
        if body.disconnected:
            LOG.info("gateway client went away", extra={"fields": {"service": what}})
            nursery.cancel_scope.cancel()
            return 499
        status = 200
        if error is not None or (outcome is not None and outcome.returncode != 0):
            _log_failure(what, error, outcome, response)
            if not response.started:
                status = _HTTP_STATUS.get(error.code, 500) if error else 500
                message = error.message if error else f"git {what} failed"
                await send_text(send, status, f"{message}\n")
        if status == 200:
            await response.finish()
        nursery.cancel_scope.cancel()
    return status


# What an error before any output answers; anything else is 500.
_HTTP_STATUS: Final = {StatusCode.INVALID_ARGUMENT: 400, StatusCode.RESOURCE_EXHAUSTED: 429}


def _log_failure(
    what: str, error: GitalyError | None, outcome: Outcome | None, response: ResponseBody
) -> None:
    fields: dict[str, object] = {"service": what, "response_started": response.started}
    if error is not None:
        fields["error"] = error.message
    if outcome is not None:
        fields["exit_code"] = outcome.returncode
        fields["stderr"] = outcome.stderr.decode("utf-8", "replace")
    LOG.warning("gateway git command failed", extra={"fields": fields})


def _repo_status(code: StatusCode) -> int:
    # An unknown storage or repository, or a directory that is not one: not found.
    # Anything else the Locator refuses (escaping paths, NUL bytes) is a bad request.
    if code in (StatusCode.NOT_FOUND, StatusCode.FAILED_PRECONDITION):
        return 404
    return 400 if code == StatusCode.INVALID_ARGUMENT else 500


def _headers(scope: Scope) -> dict[str, str]:
    # Later duplicates win; none of the headers read here may repeat meaningfully.
    return {
        name.decode("latin-1").lower(): value.decode("latin-1").strip()
        for name, value in scope["headers"]
    }

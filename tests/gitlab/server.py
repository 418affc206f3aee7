"""A small real HTTP/1.1 server with GitLab's internal API endpoints, for hook tests.

It serves `/allowed`, `/pre_receive` and `/post_receive` under `<root>/api/v4/internal`
on TCP or a unix socket, checks the `Gitlab-Shell-Api-Request` JWT like GitLab does
(HS256, issuer "gitlab-shell", the shared secret), records every request and answers
with what the test configured.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import warnings
from dataclasses import dataclass, field
from typing import Any

import h11
import jwt
import trio

PREFIX = "/api/v4/internal"
ALLOWED = "/allowed"
PRE_RECEIVE = "/pre_receive"
POST_RECEIVE = "/post_receive"


@dataclass
class Reply:
    """What an endpoint answers: status, body (a dict is sent as JSON), content type."""

    status: int = 200
    body: Any = None
    content_type: str = "application/json"
    delay_s: float = 0.0

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    claims: dict[str, Any] | None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class InternalApi:
    """The fake API's state: replies per endpoint and the requests seen."""

    secret: str
    root: str = ""
    replies: dict[str, Reply] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self.replies.setdefault(ALLOWED, Reply(body={"status": True, "message": ""}))
        self.replies.setdefault(PRE_RECEIVE, Reply(body={"reference_counter_increased": True}))
        self.replies.setdefault(
            POST_RECEIVE, Reply(body={"reference_counter_decreased": True, "messages": []})
        )

    def seen(self, endpoint: str) -> list[Recorded]:
        """The requests made to one endpoint ("/allowed", ...)."""
        path = self.root.rstrip("/") + PREFIX + endpoint
        return [request for request in self.requests if request.path == path]

    async def serve_tcp(
        self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve on an ephemeral localhost port; report the http:// URL."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        task_status.started(self.url)
        await trio.serve_listeners(self._handle, listeners)

    async def serve_unix(
        self, path: str, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve on a unix socket at `path`; report the http+unix:// URL (path escaped)."""
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(path)
        sock.listen()
        self.url = "http+unix://" + path.replace("/", "%2F")
        task_status.started(self.url)
        try:
            await trio.serve_listeners(self._handle, [trio.SocketListener(sock)])
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        connection = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                await stream.aclose()
                return
        assert request is not None
        headers = {name.decode().lower(): value.decode() for name, value in request.headers}
        path = request.target.decode()
        claims = self._claims(headers.get("gitlab-shell-api-request", ""))
        self.requests.append(Recorded(request.method.decode(), path, headers, bytes(body), claims))
        reply = self._reply(path, claims)
        await trio.sleep(reply.delay_s)
        data = reply.payload()
        out = connection.send(
            h11.Response(
                status_code=reply.status,
                headers=[("content-type", reply.content_type), ("content-length", str(len(data)))],
            )
        )
        out = (out or b"") + (connection.send(h11.Data(data=data)) or b"")
        out += connection.send(h11.EndOfMessage()) or b""
        try:
            await stream.send_all(out)
        finally:
            await stream.aclose()

    def _claims(self, token: str) -> dict[str, Any] | None:
        try:
            # GitLab takes secrets of any length; PyJWT warns about short ones.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
                claims: dict[str, Any] = jwt.decode(
                    token,
                    self.secret.strip(),
                    algorithms=["HS256"],
                    issuer="gitlab-shell",
                    options={"require": ["exp", "iat", "iss"]},
                )
        except jwt.PyJWTError:
            return None
        return claims

    def _reply(self, path: str, claims: dict[str, Any] | None) -> Reply:
        if claims is None:
            return Reply(status=401, body={"message": "401 Unauthorized"})
        prefix = self.root.rstrip("/") + PREFIX
        if not path.startswith(prefix):
            return Reply(status=404, body={"message": "404 Not Found"})
        reply = self.replies.get(path[len(prefix) :])
        return reply if reply is not None else Reply(status=404, body={"message": "404 Not Found"})

"""The internal API client: `/allowed`, `/pre_receive` and `/post_receive`.

Requests are what Gitaly sends (internal/gitlab): a JSON body encoded as Go encodes it,
an HS256 JWT from the shared secret in `Gitlab-Shell-Api-Request`, basic auth when both
user and password are set, `Connection: close`, one deadline (`read_timeout`) for the
whole exchange. Failures carry Gitaly's error text, since the hooks show it to the
pushing client. Each call opens its own connection: the API is called a few times per
push, and Gitaly does not keep connections either.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

import httpx
import jwt
import trio
from jwt.algorithms import HMACAlgorithm

from trio_gitaly.config import DEFAULT_GITLAB_READ_TIMEOUT_S, GitlabConfig
from trio_gitaly.goformat import go_quote, go_strerror

LOG: Final = logging.getLogger("trio_gitaly.gitlab")

INTERNAL_API_PATH: Final = "/api/v4/internal"
SECRET_HEADER: Final = "Gitlab-Shell-Api-Request"
JWT_ISSUER: Final = "gitlab-shell"
JWT_TTL_S: Final = 60
#: A response body larger than this is refused: the API answers with a few fields.
MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
_UNIX_PREFIX: Final = "http+unix://"
# Where requests over a unix socket are addressed (Gitaly's "http://unix" base).
_UNIX_BASE: Final = "http://unix"
# Go's json.Marshal escapes these inside strings; doing the same keeps bodies identical.
_GO_JSON_ESCAPES: Final = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}
_GO_JSON_ESCAPES_EXTRA: Final = {"\u2028": "\\u2028", "\u2029": "\\u2029"}


class _AnyLengthHMAC(HMACAlgorithm):
    """HS256 without PyJWT's short-key warning: GitLab chooses the secret, not us."""

    def check_key_length(self, key: bytes) -> str | None:
        return None


_JWS: Final = jwt.PyJWS(algorithms=[])
_JWS.register_algorithm("HS256", _AnyLengthHMAC(HMACAlgorithm.SHA256))


class GitlabApiError(Exception):
    """A call failed; `str()` is Gitaly's error text for it."""


@dataclass(frozen=True)
class AllowedParams:
    """What `/allowed` is asked about one push (Gitaly's AllowedParams).

    Attributes:
        repo_path: the repository's absolute path.
        git_object_directory: the quarantine directory, relative to the repository.
        git_alternate_object_directories: likewise, the repository's own objects.
        gl_id: "key-<n>", "user-<n>" or "username-<name>".
        changes: the pre-receive input, "<old> <new> <ref>" lines.
    """

    repo_path: str
    relative_path: str
    git_object_directory: str
    git_alternate_object_directories: tuple[str, ...]
    gl_repository: str
    gl_id: str
    gl_protocol: str
    changes: str
    push_options: tuple[str, ...]


@dataclass(frozen=True)
class PostReceiveMessage:
    """A message `/post_receive` wants shown to the pusher: "basic" or "alert"."""

    message: str
    type: str


@dataclass(frozen=True)
class _Response:
    status: int
    content_type: str
    body: bytes


class GitlabClient:
    """Calls the internal API configured by `[gitlab]` (whose `url` must be set).

    Raises:
        ValueError: the URL scheme is not http://, https:// or http+unix://.
    """

    def __init__(self, config: GitlabConfig, *, user_agent: str) -> None:
        # Gitaly unescapes the whole URL first: the socket path of http+unix:// is
        # percent-encoded so that it can hold slashes.
        url = unquote(config.url)
        self._socket: str | None = None
        if url.startswith(_UNIX_PREFIX):
            self._socket = url[len(_UNIX_PREFIX) :]
            root = config.relative_url_root.strip("/")
            self._base = f"{_UNIX_BASE}/{root}" if root else _UNIX_BASE
        elif url.startswith(("http://", "https://")):
            # As Gitaly: for http(s) the URL already holds any relative root.
            self._base = url
        else:
            raise ValueError(f"unknown GitLab URL prefix: {config.url!r}")
        self._config = config
        self._user_agent = user_agent
        self._timeout_s = config.http_settings.read_timeout or DEFAULT_GITLAB_READ_TIMEOUT_S
        settings = config.http_settings
        self._auth = (
            (settings.user, settings.password) if settings.user and settings.password else None
        )
        self._secret: bytes | None = None
        self._ssl: ssl.SSLContext | None = None

    async def allowed(self, params: AllowedParams) -> tuple[bool, str]:
        """Ask whether the push may proceed: (status, message).

        Raises:
            GitlabApiError: the API was unreachable or answered with an error.

        Cancellation: the request is abandoned and its connection closed.
        """
        body: dict[str, Any] = {
            "action": "git-receive-pack",
            "gl_repository": params.gl_repository,
            "project": params.repo_path.replace("'", ""),
            "changes": params.changes,
            "protocol": params.gl_protocol,
            "relative_path": params.relative_path,
            "env": _go_json(
                {
                    "GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE": list(
                        params.git_alternate_object_directories
                    )
                    or None,
                    "GIT_OBJECT_DIRECTORY_RELATIVE": params.git_object_directory,
                }
            ).decode(),
            **_identity(params.gl_id),
            "push_options": list(params.push_options),
        }
        # Gitaly's request struct omits empty fields.
        body = {key: value for key, value in body.items() if value}
        response = await self._post("/allowed", body)
        if response.status not in (200, 300):
            raise GitlabApiError(f"gitlab api is not accessible: {response.status}")
        _check_json(response, "/allowed endpoint respond with unsupported content type")
        document = _decode(response.body, "decoding response from /allowed endpoint")
        return _field(document, "status", bool, False), _field(document, "message", str, "")

    async def pre_receive(self, gl_repository: str) -> bool:
        """Increase the repository's reference counter; whether it was increased.

        Raises:
            GitlabApiError: as `allowed`.

        Cancellation: as `allowed`.
        """
        try:
            response = await self._post("/pre_receive", {"gl_repository": gl_repository})
        except GitlabApiError as exc:
            raise GitlabApiError(f"http post to gitlab api /pre_receive endpoint: {exc}") from exc
        if response.status != 200:
            raise GitlabApiError(f"pre-receive call failed with status: {response.status}")
        _check_json(response, "/pre_receive endpoint respond with unsupported content type")
        document = _decode(response.body, "decoding response from /pre_receive endpoint")
        increased: bool = _field(document, "reference_counter_increased", bool, False)
        return increased

    async def post_receive(
        self, gl_repository: str, gl_id: str, changes: str, push_options: tuple[str, ...]
    ) -> tuple[bool, list[PostReceiveMessage]]:
        """Decrease the reference counter: (decreased, messages for the pusher).

        Raises:
            GitlabApiError: as `allowed`.

        Cancellation: as `allowed`.
        """
        body = {
            "changes": changes,
            "gl_repository": gl_repository,
            "identifier": gl_id,
            "push_options": list(push_options) or None,
        }
        try:
            response = await self._post("/post_receive", body)
        except GitlabApiError as exc:
            raise GitlabApiError(f"http post to gitlab api /post_receive endpoint: {exc}") from exc
        if response.status != 200:
            raise GitlabApiError(f"post-receive call failed with status: {response.status}")
        try:
            media_type = _media_type(response.content_type)
        except ValueError as exc:
            raise GitlabApiError(
                f"/post_receive endpoint respond with invalid content type: {exc}"
            ) from None
        if media_type != "application/json":
            raise GitlabApiError(
                f"/post_receive endpoint respond with unsupported content type: {media_type}"
            )
        context = "decoding response from /post_receive endpoint"
        document = _decode(response.body, context)
        messages = []
        for item in _field(document, "messages", list, []):
            if item is not None and not isinstance(item, dict):
                raise GitlabApiError(f"{context}: messages must hold objects")
            messages.append(
                PostReceiveMessage(_field(item, "message", str, ""), _field(item, "type", str, ""))
            )
        return _field(document, "reference_counter_decreased", bool, False), messages

    async def _post(self, path: str, body: dict[str, Any]) -> _Response:
        url = f"{self._base}{INTERNAL_API_PATH}{path}"
        headers = {
            SECRET_HEADER: await self._token(),
            "Content-Type": "application/json",
            "User-Agent": self._user_agent,
            "Connection": "close",
        }
        start = time.monotonic()
        try:
            with trio.fail_after(self._timeout_s):
                response = await self._exchange(url, _go_json(body), headers)
        except (httpx.HTTPError, trio.TooSlowError, OSError, ssl.SSLError) as exc:
            LOG.error(
                "Internal API unreachable",
                extra={"fields": {"method": "POST", "url": url, "error": repr(exc)}},
            )
            raise GitlabApiError("Internal API unreachable") from exc
        LOG.info(
            "Finished HTTP request",
            extra={
                "fields": {
                    "method": "POST",
                    "url": url,
                    "status": response.status,
                    "duration_ms": round((time.monotonic() - start) * 1000, 3),
                }
            },
        )
        if not 200 <= response.status <= 399:
            raise GitlabApiError(_error_message(response))
        return response

    async def _exchange(self, url: str, content: bytes, headers: dict[str, str]) -> _Response:
        transport = httpx.AsyncHTTPTransport(uds=self._socket, verify=await self._ssl_context())
        # trust_env=False: Gitaly's transport uses no proxy and no netrc.
        async with (
            httpx.AsyncClient(transport=transport, timeout=None, trust_env=False) as client,
            client.stream("POST", url, content=content, headers=headers, auth=self._auth) as reply,
        ):
            body = bytearray()
            async for chunk in reply.aiter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise httpx.DecodingError(f"response over {MAX_RESPONSE_BYTES} bytes")
            return _Response(reply.status_code, reply.headers.get("content-type", ""), bytes(body))

    async def _token(self) -> str:
        if self._secret is None:
            self._secret = await trio.to_thread.run_sync(self._read_secret)
        now = int(time.time())
        claims = {"iss": JWT_ISSUER, "exp": now + JWT_TTL_S, "iat": now}
        try:
            return _JWS.encode(_go_json(claims), self._secret.strip(), algorithm="HS256")
        except jwt.InvalidKeyError as exc:
            raise GitlabApiError(f"signing the request: {exc}") from exc

    def _read_secret(self) -> bytes:
        if self._config.secret:
            return self._config.secret.encode()
        try:
            with open(self._config.secret_file, "rb") as f:
                return f.read()
        except OSError as exc:
            raise GitlabApiError(
                f"reading secret file: open {self._config.secret_file}: {go_strerror(exc)}"
            ) from exc

    async def _ssl_context(self) -> ssl.SSLContext | bool:
        if not self._base.startswith("https://"):
            return False
        if self._ssl is None:
            # Loading the system's CAs reads many files: not on the event loop.
            self._ssl = await trio.to_thread.run_sync(_ssl_context, self._config)
        return self._ssl


def _ssl_context(config: GitlabConfig) -> ssl.SSLContext:
    """System CAs plus `ca_file` and every file in `ca_path`, as Gitaly's pool."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    settings = config.http_settings
    if settings.ca_file:
        if not os.path.exists(settings.ca_file):
            raise GitlabApiError(
                f"cannot find cafile {go_quote(settings.ca_file)}: cafile not found"
            )
        _add_ca(context, settings.ca_file)
    if settings.ca_path and os.path.isdir(settings.ca_path):
        for name in sorted(os.listdir(settings.ca_path)):
            path = os.path.join(settings.ca_path, name)
            if not os.path.isdir(path):
                _add_ca(context, path)
    return context


def _add_ca(context: ssl.SSLContext, path: str) -> None:
    # Like Go's AppendCertsFromPEM: a file that holds no certificate adds nothing.
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError):
        LOG.warning("ignoring CA file without certificates", extra={"fields": {"path": path}})


def _identity(gl_id: str) -> dict[str, str]:
    """The `/allowed` field for a gl_id: username, key_id or user_id (Gitaly's rules)."""
    if gl_id.startswith("username-"):
        return {"username": gl_id.removeprefix("username-")}
    key, value = "", ""
    for prefix, field in (("key-", "key_id"), ("user-", "user_id")):
        if gl_id.startswith(prefix):
            key, value = field, gl_id.removeprefix(prefix)
            break
    if not (value.isascii() and value.isdigit()):
        raise GitlabApiError(f"setting gl_id: gl_id={go_quote(gl_id)} is invalid")
    return {key: value}


def _error_message(response: _Response) -> str:
    # Gitaly's parseError: the body's "message" when the body is JSON, else the status.
    try:
        document, _ = json.JSONDecoder().raw_decode(response.body.decode("utf-8").lstrip())
    except ValueError:
        return f"Internal API error ({response.status})"
    if document is None:
        return ""
    if isinstance(document, dict):
        message = document.get("message")
        if message is None:
            return ""
        if isinstance(message, str):
            return message
    return f"Internal API error ({response.status})"


def _check_json(response: _Response, context: str) -> None:
    try:
        media_type = _media_type(response.content_type)
    except ValueError as exc:
        raise GitlabApiError(f"{context}: {exc}") from None
    if media_type != "application/json":
        raise GitlabApiError(f"{context}: {media_type}")


def _media_type(content_type: str) -> str:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not media_type:
        raise ValueError("mime: no media type")
    return media_type


def _decode(body: bytes, context: str) -> Any:
    # Go's json.Decoder reads the first JSON value and ignores what follows it.
    try:
        text = body.decode("utf-8")
        document, _ = json.JSONDecoder().raw_decode(text.lstrip())
    except ValueError as exc:
        raise GitlabApiError(f"{context}: {exc}") from None
    if document is not None and not isinstance(document, dict):
        raise GitlabApiError(f"{context}: expected a JSON object")
    return document


def _field(document: dict[str, Any] | None, key: str, kind: type, default: Any) -> Any:
    value = None if document is None else document.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise GitlabApiError(f"json: cannot unmarshal {key}: expected {kind.__name__}")
    return value


def _go_json(value: Any) -> bytes:
    """`value` as Go's json.Marshal writes it: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # Outside strings, JSON holds none of these characters, so replacing is safe.
    for char, escape in (_GO_JSON_ESCAPES | _GO_JSON_ESCAPES_EXTRA).items():
        text = text.replace(char, escape)
    return text.encode("utf-8", "replace")

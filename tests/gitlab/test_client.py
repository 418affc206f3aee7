"""The internal API client against a real HTTP server, on TCP and on a unix socket."""

from __future__ import annotations

import json
import os
import time

import pytest
import trio

from tests.gitlab.server import ALLOWED, POST_RECEIVE, PRE_RECEIVE, InternalApi, Reply
from trio_gitaly.config import GitlabConfig, GitlabHttpSettings
from trio_gitaly.gitlab.client import (
    AllowedParams,
    GitlabApiError,
    GitlabClient,
    PostReceiveMessage,
)

SECRET = "a shared secret that is long enough!"
OLD, NEW = "a" * 40, "b" * 40
CHANGES = f"{OLD} {NEW} refs/heads/main\n"


def params(**overrides: object) -> AllowedParams:
    values: dict[str, object] = {
        "repo_path": "/storage/it's.git",
        "relative_path": "it's.git",
        "git_object_directory": "objects/incoming-x",
        "git_alternate_object_directories": ("objects",),
        "gl_repository": "project-1",
        "gl_id": "key-42",
        "gl_protocol": "ssh",
        "changes": CHANGES,
        "push_options": (),
    }
    values.update(overrides)
    return AllowedParams(**values)  # type: ignore[arg-type]


@pytest.fixture
async def api(nursery: trio.Nursery) -> InternalApi:
    server = InternalApi(SECRET)
    await nursery.start(server.serve_tcp)
    return server


def client_for(api: InternalApi, **settings: object) -> GitlabClient:
    return GitlabClient(
        GitlabConfig(url=api.url, secret=SECRET, **settings),  # type: ignore[arg-type]
        user_agent="gitaly/test",
    )


async def test_allowed_request_as_gitaly_sends_it(api: InternalApi) -> None:
    client = client_for(api)
    before = int(time.time())
    assert await client.allowed(params(push_options=("ci.skip", "x=<&>"))) == (True, "")
    [request] = api.seen(ALLOWED)
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "gitaly/test"
    assert request.headers["connection"] == "close"
    assert "authorization" not in request.headers
    assert request.claims is not None
    assert request.claims["iss"] == "gitlab-shell"
    assert before <= request.claims["iat"] <= request.claims["exp"] - 60 <= int(time.time())
    # Gitaly's field order, empty fields left out, HTML characters escaped as Go does.
    assert request.body.decode() == (
        '{"action":"git-receive-pack","gl_repository":"project-1","project":"/storage/its.git",'
        f'"changes":"{OLD} {NEW} refs/heads/main\\n","protocol":"ssh",'
        '"relative_path":"it\'s.git","env":"{\\"GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE\\":'
        '[\\"objects\\"],\\"GIT_OBJECT_DIRECTORY_RELATIVE\\":\\"objects/incoming-x\\"}",'
        '"key_id":"42","push_options":["ci.skip","x=\\u003c\\u0026\\u003e"]}'
    )


@pytest.mark.parametrize(
    ("gl_id", "field"),
    [("key-1", {"key_id": "1"}), ("user-7", {"user_id": "7"}), ("username-jo", {"username": "jo"})],
)
async def test_allowed_identity_from_gl_id(
    api: InternalApi, gl_id: str, field: dict[str, str]
) -> None:
    await client_for(api).allowed(params(gl_id=gl_id))
    body = api.seen(ALLOWED)[0].json()
    assert {key: body[key] for key in ("key_id", "user_id", "username") if key in body} == field


@pytest.mark.parametrize("gl_id", ["key-", "user-x1", "12", "key-١٢"])
async def test_allowed_refuses_invalid_gl_id(api: InternalApi, gl_id: str) -> None:
    with pytest.raises(GitlabApiError) as info:
        await client_for(api).allowed(params(gl_id=gl_id))
    assert str(info.value) == f'setting gl_id: gl_id="{gl_id}" is invalid'
    assert not api.requests


async def test_allowed_without_object_directories_sends_null(api: InternalApi) -> None:
    await client_for(api).allowed(
        params(git_object_directory="", git_alternate_object_directories=())
    )
    env = json.loads(api.seen(ALLOWED)[0].json()["env"])
    assert env == {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES_RELATIVE": None,
        "GIT_OBJECT_DIRECTORY_RELATIVE": "",
    }


UNSUPPORTED = "/allowed endpoint respond with unsupported content type: "
DENIED = "You are not allowed to push"


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (Reply(body={"status": False, "message": "not allowed"}), (False, "not allowed")),
        (Reply(status=300, body={"status": True}), (True, "")),
        (Reply(status=401, body=b""), "Internal API error (401)"),
        (Reply(status=403, body={"message": DENIED}), DENIED),
        (Reply(status=500, body="<html/>", content_type="text/html"), "Internal API error (500)"),
        (Reply(status=201, body={"status": True}), "gitlab api is not accessible: 201"),
        (Reply(body="{}", content_type="text/plain"), UNSUPPORTED + "text/plain"),
        (Reply(body="{}", content_type=""), UNSUPPORTED + "mime: no media type"),
        (Reply(body={"status": "yes"}), "json: cannot unmarshal status: expected bool"),
    ],
)
async def test_allowed_answers(
    api: InternalApi, reply: Reply, outcome: tuple[bool, str] | str
) -> None:
    api.replies[ALLOWED] = reply
    client = client_for(api)
    if isinstance(outcome, tuple):
        assert await client.allowed(params()) == outcome
        return
    with pytest.raises(GitlabApiError) as info:
        await client.allowed(params())
    assert str(info.value) == outcome


async def test_wrong_secret_is_an_api_error(api: InternalApi) -> None:
    client = GitlabClient(GitlabConfig(url=api.url, secret="another secret"), user_agent="x")
    with pytest.raises(GitlabApiError, match=r"^401 Unauthorized$"):
        await client.allowed(params())


async def test_secret_file_is_trimmed_and_short_secrets_work(
    nursery: trio.Nursery, tmp_path: object
) -> None:
    api = InternalApi("short")
    await nursery.start(api.serve_tcp)
    path = os.path.join(str(tmp_path), "secret")
    with open(path, "w") as f:
        f.write("short\n")
    client = GitlabClient(GitlabConfig(url=api.url, secret_file=path), user_agent="x")
    assert await client.pre_receive("project-1") is True
    assert api.seen(PRE_RECEIVE)[0].claims is not None


async def test_missing_secret_file_fails_the_call(api: InternalApi, short_dir: str) -> None:
    missing = os.path.join(short_dir, "missing")
    client = GitlabClient(GitlabConfig(url=api.url, secret_file=missing), user_agent="x")
    with pytest.raises(GitlabApiError) as info:
        await client.allowed(params())
    assert str(info.value) == f"reading secret file: open {missing}: no such file or directory"


async def test_basic_auth_needs_user_and_password(api: InternalApi) -> None:
    settings = GitlabHttpSettings(user="u", password="p")
    await client_for(api, http_settings=settings).pre_receive("project-1")
    await client_for(api, http_settings=GitlabHttpSettings(user="u")).pre_receive("project-1")
    first, second = api.seen(PRE_RECEIVE)
    assert first.headers["authorization"] == "Basic dTpw"
    assert "authorization" not in second.headers


async def test_pre_receive(api: InternalApi) -> None:
    client = client_for(api)
    assert await client.pre_receive("project-1") is True
    assert api.seen(PRE_RECEIVE)[0].body == b'{"gl_repository":"project-1"}'
    api.replies[PRE_RECEIVE] = Reply(body={"reference_counter_increased": False})
    assert await client.pre_receive("project-1") is False
    api.replies[PRE_RECEIVE] = Reply(status=500, body={"message": "boom"})
    with pytest.raises(
        GitlabApiError, match=r"^http post to gitlab api /pre_receive endpoint: boom$"
    ):
        await client.pre_receive("project-1")
    api.replies[PRE_RECEIVE] = Reply(status=204, body=b"")
    with pytest.raises(GitlabApiError, match=r"^pre-receive call failed with status: 204$"):
        await client.pre_receive("project-1")


async def test_post_receive(api: InternalApi) -> None:
    api.replies[POST_RECEIVE] = Reply(
        body={
            "reference_counter_decreased": True,
            "messages": [{"message": "hi", "type": "basic"}, {"message": "!", "type": "alert"}],
        }
    )
    client = client_for(api)
    decreased, messages = await client.post_receive("project-1", "user-1", CHANGES, ())
    assert decreased is True
    assert messages == [PostReceiveMessage("hi", "basic"), PostReceiveMessage("!", "alert")]
    assert api.seen(POST_RECEIVE)[0].json() == {
        "changes": CHANGES,
        "gl_repository": "project-1",
        "identifier": "user-1",
        "push_options": None,
    }
    await client.post_receive("project-1", "user-1", CHANGES, ("a", "b"))
    assert api.seen(POST_RECEIVE)[1].json()["push_options"] == ["a", "b"]
    api.replies[POST_RECEIVE] = Reply(body="{}", content_type="")
    with pytest.raises(GitlabApiError) as info:
        await client.post_receive("project-1", "user-1", CHANGES, ())
    assert str(info.value) == (
        "/post_receive endpoint respond with invalid content type: mime: no media type"
    )


async def test_unreachable_api(short_dir: str) -> None:
    url = "http+unix://" + os.path.join(short_dir, "nobody.sock").replace("/", "%2F")
    client = GitlabClient(GitlabConfig(url=url, secret=SECRET), user_agent="x")
    with pytest.raises(GitlabApiError, match=r"^Internal API unreachable$"):
        await client.allowed(params())
    with pytest.raises(
        GitlabApiError,
        match=r"^http post to gitlab api /post_receive endpoint: Internal API unreachable$",
    ):
        await client.post_receive("project-1", "user-1", CHANGES, ())


async def test_read_timeout_bounds_the_whole_request(api: InternalApi) -> None:
    api.replies[PRE_RECEIVE] = Reply(body={"reference_counter_increased": True}, delay_s=5)
    client = client_for(api, http_settings=GitlabHttpSettings(read_timeout=1))
    start = trio.current_time()
    with pytest.raises(GitlabApiError, match=r"unreachable$"):
        await client.pre_receive("project-1")
    assert trio.current_time() - start < 3


async def test_unix_socket_with_relative_url_root(nursery: trio.Nursery, short_dir: str) -> None:
    api = InternalApi(SECRET, root="/gitlab")
    url = await nursery.start(api.serve_unix, os.path.join(short_dir, "api.sock"))
    client = GitlabClient(
        GitlabConfig(url=url, secret=SECRET, relative_url_root="/gitlab/"), user_agent="x"
    )
    assert await client.allowed(params()) == (True, "")
    [request] = api.seen(ALLOWED)
    assert request.path == "/gitlab/api/v4/internal/allowed"
    assert request.headers["host"] == "unix"

"""What a client may pass to git's transport commands, and what the server always sets."""

from __future__ import annotations

import pytest

from trio_gitaly.errors import GitalyError, StatusCode
from trio_gitaly.transport import options


def test_client_config_splits_at_the_first_equals_sign() -> None:
    pairs = options.client_config(["receive.maxInputSize=10", "http.extraHeader=a=b"])
    assert pairs == [("receive.maxInputSize", "10"), ("http.extraHeader", "a=b")]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("receive.maxInputSize", "cannot convert invalid config key"),
        ("=value", "invalid config key"),
        ("bad key=1", "invalid config key"),
        ("core.x=a\nb", "contains nul or newline"),
    ],
)
def test_client_config_refuses_malformed_options(option: str, message: str) -> None:
    with pytest.raises(GitalyError) as error:
        options.client_config([option])
    assert error.value.code == StatusCode.INVALID_ARGUMENT
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("protocol", "env"),
    [
        ("version=2", {"GIT_PROTOCOL": "version=2"}),
        ("version=1", {"GIT_PROTOCOL": "version=1"}),
        ("", {}),
        ("version=3", {}),
        ("version=2:x=y", {}),
    ],
)
def test_only_known_protocol_versions_reach_git(protocol: str, env: dict[str, str]) -> None:
    assert options.protocol_env(protocol) == env


def test_internal_refs_are_hidden_from_pushes_and_hidden_ones_from_fetches() -> None:
    receive = options.receive_pack_config()
    upload = options.upload_pack_config()
    hidden_from_push = {value for key, value in receive if key == "receive.hideRefs"}
    hidden_from_fetch = {value for key, value in upload if key == "uploadpack.hideRefs"}
    assert "refs/merge-requests/" in hidden_from_push
    assert "refs/keep-around/" in hidden_from_push
    assert "refs/merge-requests/" not in hidden_from_fetch
    assert "refs/keep-around/" in hidden_from_fetch
    assert ("transfer.fsckObjects", "true") in receive
    assert ("uploadpack.allowFilter", "true") in upload

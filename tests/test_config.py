"""Config decoding and validation: every bad input is one ConfigError naming the key."""

from __future__ import annotations

import io
import json
import os
from typing import TYPE_CHECKING

import msgspec
import pytest

from trio_gitaly import config
from trio_gitaly.config import (
    Config,
    ConfigError,
    Duration,
    ListenAddress,
    dec_hook,
    embedded_defaults,
    enc_hook,
    json_schema,
    load,
    log_format,
    parse,
)

if TYPE_CHECKING:
    from pathlib import Path

# Placeholders, filled per test: a storage directory, and an existing regular file.
STORAGE = '[[storage]]\nname = "default"\npath = "@DATA@"\n'
LISTEN = 'listen_addr = "127.0.0.1:0"\n'
GOOD = LISTEN + STORAGE


def _fill(text: str, tmp_path: Path) -> str:
    file = tmp_path / "regular-file"
    file.write_text("not a directory\n")
    return text.replace("@DATA@", str(tmp_path / "repos")).replace("@FILE@", str(file))


def _parse(text: str, tmp_path: Path) -> Config:
    return parse(_fill(text, tmp_path))


BAD_CASES = [
    # (id, TOML, expected key, fragment of the problem)
    ("unknown-top-level-key", 'bin_dir = "/x"\n' + GOOD, "bin_dir", "unknown key"),
    ("unknown-storage-key", GOOD + 'sentry_environment = ""\n', "storage[0].sentry_environment",
     "unknown key"),
    ("unknown-key-second-storage", GOOD + '[[storage]]\nname = "b"\npath = "@DATA@"\nfoo = 1\n',
     "storage[1].foo", "unknown key"),
    ("unknown-section-key", GOOD + "[grpc]\nmax_streams = 1\n", "grpc.max_streams", "unknown key"),
    ("wrong-type-int", GOOD + '[grpc]\nmax_message_bytes = "4MiB"\n', "grpc.max_message_bytes",
     "expected int, got str"),
    ("wrong-type-bool", GOOD + '[auth]\ntransitioning = "yes"\n', "auth.transitioning",
     "expected bool, got str"),
    ("wrong-type-section", "grpc = 5\n" + GOOD, "grpc", "expected object, got int"),
    ("wrong-type-storage", LISTEN + "storage = 5\n", "storage", "expected array, got int"),
    ("below-minimum", GOOD + "[grpc]\nmax_message_bytes = 10\n", "grpc.max_message_bytes",
     "expected int >= 1024"),
    ("above-maximum", GOOD + "[grpc]\nmax_concurrent_streams = 70000\n",
     "grpc.max_concurrent_streams", "expected int <= 65536"),
    ("bad-enum", GOOD + '[logging]\nlevel = "loud"\n', "logging.level",
     "invalid enum value 'loud'"),
    ("missing-storage-path", LISTEN + '[[storage]]\nname = "a"\n', "storage[0].path",
     "missing required key"),
    ("duration-words", 'graceful_restart_timeout = "1 minute"\n' + GOOD,
     "graceful_restart_timeout", "invalid duration '1 minute'"),
    ("duration-no-unit", 'graceful_restart_timeout = "10"\n' + GOOD, "graceful_restart_timeout",
     "invalid duration"),
    ("duration-negative", 'graceful_restart_timeout = "-1s"\n' + GOOD,
     "graceful_restart_timeout", "invalid duration"),
    ("duration-int", "graceful_restart_timeout = 60\n" + GOOD, "graceful_restart_timeout",
     "expected str, got int"),
    ("duration-nested", GOOD + '[grpc]\ntls_handshake_timeout = "5x"\n',
     "grpc.tls_handshake_timeout", "invalid duration '5x'"),
    ("address-no-port", 'listen_addr = "localhost"\n' + STORAGE, "listen_addr", "missing port"),
    ("address-port-range", 'listen_addr = "localhost:65536"\n' + STORAGE, "listen_addr",
     "port must be a number"),
    ("address-port-name", 'listen_addr = "localhost:http"\n' + STORAGE, "listen_addr",
     "port must be a number"),
    ("address-bare-ipv6", 'listen_addr = "::1:8075"\n' + STORAGE, "listen_addr",
     "must be in brackets"),
    ("address-bad-ipv6", 'listen_addr = "[::zz]:1"\n' + STORAGE, "listen_addr", "bad IPv6 host"),
    ("address-bad-ipv4", 'listen_addr = "256.1.1.1:80"\n' + STORAGE, "listen_addr",
     "bad IPv4 host"),
    ("address-bad-name", 'listen_addr = "my host:80"\n' + STORAGE, "listen_addr", "bad host name"),
    ("address-int", "listen_addr = 8075\n" + STORAGE, "listen_addr", "expected str, got int"),
    ("address-tls", 'tls_listen_addr = "localhost"\n' + GOOD, "tls_listen_addr", "missing port"),
    ("address-prometheus", 'prometheus_listen_addr = "x:-1"\n' + GOOD, "prometheus_listen_addr",
     "port must be a number"),
    ("no-storage", LISTEN, "storage", "at least one storage is required"),
    ("empty-storage-name", LISTEN + '[[storage]]\nname = ""\npath = "@DATA@"\n',
     "storage[0].name", "must not be empty"),
    ("duplicate-storage-name", GOOD + STORAGE, "storage[1].name",
     "duplicate storage name 'default'"),
    ("empty-storage-path", LISTEN + '[[storage]]\nname = "a"\npath = ""\n', "storage[0].path",
     "must not be empty"),
    ("storage-path-is-file", LISTEN + '[[storage]]\nname = "a"\npath = "@FILE@"\n',
     "storage[0].path", "not a directory"),
    ("storage-path-under-file", LISTEN + '[[storage]]\nname = "a"\npath = "@FILE@/repos"\n',
     "storage[0].path", "cannot create directory"),
    ("no-listener", STORAGE, "listen_addr", "no listener configured"),
    ("empty-listeners", 'socket_path = ""\nlisten_addr = ""\ntls_listen_addr = ""\n' + STORAGE,
     "listen_addr", "no listener configured"),
    ("tls-without-certificate", 'tls_listen_addr = "localhost:0"\n' + STORAGE,
     "tls.certificate_path", "required when tls_listen_addr is set"),
    ("tls-without-key", 'tls_listen_addr = "localhost:0"\n' + STORAGE
     + '[tls]\ncertificate_path = "@FILE@"\n', "tls.key_path", "required when tls_listen_addr"),
    ("tls-certificate-missing", GOOD + '[tls]\ncertificate_path = "/nonexistent/cert.pem"\n',
     "tls.certificate_path", "cannot read '/nonexistent/cert.pem': no such file"),
    ("tls-key-is-directory", GOOD + '[tls]\nkey_path = "/"\n', "tls.key_path", "cannot read '/'"),
    ("missing-runtime-dir", 'runtime_dir = "/nonexistent/run"\n' + GOOD, "runtime_dir",
     "not an existing directory"),
    ("runtime-dir-is-file", 'runtime_dir = "@FILE@"\n' + GOOD, "runtime_dir",
     "not an existing directory"),
    ("concurrency-bad-rpc", GOOD + '[[concurrency]]\nrpc = "SSHUploadPack"\n', "concurrency[0].rpc",
     "not a full method name"),
    ("concurrency-twice", GOOD + '[[concurrency]]\nrpc = "/a.B/C"\n' * 2, "concurrency[1].rpc",
     "limited twice"),
    ("concurrency-no-queue", GOOD + '[[concurrency]]\nrpc = "/a.B/C"\nmax_queue_size = 0\n',
     "concurrency[0].max_queue_size", "expected int >= 1"),
    ("concurrency-negative", GOOD + '[[concurrency]]\nrpc = "/a.B/C"\nmax_per_repo = -1\n',
     "concurrency[0].max_per_repo", "expected int >= 0"),
    ("concurrency-adaptive-min", GOOD + '[[concurrency]]\nrpc = "/a.B/C"\nadaptive = true\n'
     "initial_limit = 1\nmax_limit = 2\n", "concurrency[0].min_limit", "at least 1"),
    ("concurrency-adaptive-initial", GOOD + '[[concurrency]]\nrpc = "/a.B/C"\nadaptive = true\n'
     "initial_limit = 1\nmin_limit = 2\nmax_limit = 3\n", "concurrency[0].initial_limit",
     "below min_limit"),
    ("concurrency-adaptive-max", GOOD + '[[concurrency]]\nrpc = "/a.B/C"\nadaptive = true\n'
     "initial_limit = 4\nmin_limit = 2\nmax_limit = 3\n", "concurrency[0].max_limit",
     "below initial_limit"),
    ("concurrency-wait", GOOD + '[[concurrency]]\nrpc = "/a.B/C"\nmax_queue_wait = "soon"\n',
     "concurrency[0].max_queue_wait", "invalid duration"),
    ("pack-objects-adaptive", GOOD + "[pack_objects_limiting]\nadaptive = true\n"
     "initial_limit = 5\nmax_limit = 4\n", "pack_objects_limiting.max_limit",
     "below initial_limit"),
    ("adaptive-interval", GOOD + '[adaptive_limiting]\ncalibration_interval = "1ms"\n',
     "adaptive_limiting.calibration_interval", "at least 0.1s"),
    ("adaptive-threshold", GOOD + "[adaptive_limiting]\nmemory_threshold = -0.5\n",
     "adaptive_limiting.memory_threshold", "expected float >= 0.0"),
    ("cgroups-unknown-key", GOOD + "[cgroups]\ncount = 3\n", "cgroups.count", "unknown key"),
    ("cgroups-child-over-parent", GOOD + "[cgroups]\ncpu_shares = 100\n"
     "[cgroups.repositories]\ncount = 2\ncpu_shares = 200\n", "cgroups.repositories.cpu_shares",
     "more than the parent's"),
    ("cgroups-per-repo", GOOD + "[cgroups.repositories]\ncount = 2\nmax_cgroups_per_repo = 3\n",
     "cgroups.repositories.max_cgroups_per_repo", "more than repositories.count"),
    ("cgroups-relative", GOOD + '[cgroups]\nmountpoint = "sys/fs/cgroup"\n', "cgroups.mountpoint",
     "absolute path"),
    ("cgroups-root", GOOD + '[cgroups]\nhierarchy_root = "../x"\n', "cgroups.hierarchy_root",
     "below the mountpoint"),
    ("maintenance-hour", GOOD + "[daily_maintenance]\nstart_hour = 24\n",
     "daily_maintenance.start_hour", "expected int <= 23"),
    ("maintenance-long", GOOD + '[daily_maintenance]\nduration = "25h"\n',
     "daily_maintenance.duration", "at most 24h"),
    ("maintenance-storage", GOOD + '[daily_maintenance]\nstorages = ["nope"]\n',
     "daily_maintenance.storages[0]", "no storage named 'nope'"),
    ("invalid-toml", GOOD + "listen_addr =\n", "--config", "invalid TOML"),
    ("invalid-toml-duplicate", LISTEN + GOOD, "--config", "invalid TOML: cannot overwrite"),
    ("invalid-toml-unquoted", GOOD + "[[git.config]]\nkey = fetch.fsckObjects\n", "--config",
     "invalid TOML"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "key", "fragment"), [case[1:] for case in BAD_CASES], ids=[c[0] for c in BAD_CASES]
)
def test_bad_config(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(text, tmp_path)
    assert info.value.key == key
    assert fragment in info.value.problem
    assert str(info.value) == f"{key}: {info.value.problem}"
    assert "\n" not in str(info.value)


def test_rejected_config_creates_no_storage(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no listener"):
        _parse(STORAGE, tmp_path)
    assert not (tmp_path / "repos").exists()


def test_full_config(tmp_path: Path) -> None:
    text = """
    socket_path = "@DATA@/../gitaly.socket"
    listen_addr = "[::1]:0"
    tls_listen_addr = "0.0.0.0:9999"
    prometheus_listen_addr = "localhost:9236"
    runtime_dir = "@DATA@"
    graceful_restart_timeout = "1m30s"

    [tls]
    certificate_path = "@FILE@"
    key_path = "@FILE@"

    [[storage]]
    name = "default"
    path = "@DATA@"

    [[storage]]
    name = "other"
    path = "@DATA@/../other"

    [git]
    bin_path = "/usr/bin/git"

    [logging]
    format = "text"
    level = "warn"

    [auth]
    token = "secret"
    transitioning = true

    [grpc]
    max_message_bytes = 1048576
    max_concurrent_streams = 10
    tls_handshake_timeout = "500ms"
    """
    (tmp_path / "repos").mkdir()  # runtime_dir must already exist; storages need not
    cfg = _parse(text, tmp_path)

    assert cfg.graceful_restart_timeout.seconds == 90.0
    assert cfg.grpc.tls_handshake_timeout.seconds == 0.5
    assert cfg.listen_addr == ListenAddress("::1", 0)
    assert str(cfg.listen_addr) == "[::1]:0"
    assert cfg.tls_listen_addr == ListenAddress("0.0.0.0", 9999)
    assert str(cfg.prometheus_listen_addr) == "localhost:9236"
    assert [(s.name, s.path) for s in cfg.storage] == [
        ("default", str(tmp_path / "repos")),
        ("other", str(tmp_path / "other")),  # normalised, and created
    ]
    assert (tmp_path / "other").is_dir()
    assert cfg.tls.certificate_path == str(tmp_path / "regular-file")
    assert cfg.git.bin_path == "/usr/bin/git"
    assert (cfg.logging.format, cfg.logging.level) == ("text", "warn")
    assert (cfg.auth.token, cfg.auth.transitioning) == ("secret", True)
    assert (cfg.grpc.max_message_bytes, cfg.grpc.max_concurrent_streams) == (1048576, 10)

    # The hooks round-trip: an effective config can be dumped and read back unchanged.
    encoded = msgspec.json.encode(cfg, enc_hook=enc_hook)
    assert msgspec.json.decode(encoded, type=Config, dec_hook=dec_hook) == cfg


def test_defaults(tmp_path: Path) -> None:
    cfg = _parse(GOOD, tmp_path)
    assert cfg.graceful_restart_timeout.seconds == config.DEFAULT_GRACEFUL_RESTART_TIMEOUT_S
    assert cfg.grpc.tls_handshake_timeout.seconds == config.DEFAULT_TLS_HANDSHAKE_TIMEOUT_S
    assert cfg.grpc.max_message_bytes == config.DEFAULT_MAX_MESSAGE_BYTES == 4 * 1024 * 1024
    assert cfg.grpc.max_concurrent_streams == config.DEFAULT_MAX_CONCURRENT_STREAMS
    assert (cfg.socket_path, cfg.runtime_dir, cfg.git.bin_path, cfg.auth.token) == ("",) * 4
    assert cfg.tls_listen_addr is None
    assert cfg.prometheus_listen_addr is None
    assert (cfg.logging.format, cfg.logging.level) == (None, "info")


def test_empty_address_means_unset(tmp_path: Path) -> None:
    cfg = _parse('socket_path = "/tmp/g.sock"\nlisten_addr = ""\n' + STORAGE, tmp_path)
    assert cfg.listen_addr is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("0s", 0.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("1.5h", 5400.0),
     ("2h45m", 9900.0), (".5s", 0.5), ("1us", 1e-6), ("1\u00b5s", 1e-6), ("300ns", 3e-7)],
    ids=lambda value: str(value),
)  # fmt: skip
def test_duration_parse(text: str, seconds: float) -> None:
    duration = Duration.parse(text)
    assert duration.seconds == pytest.approx(seconds)
    assert Duration.parse(str(duration)).seconds == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("127.0.0.1:8075", "127.0.0.1", 8075), ("[::1]:0", "::1", 0),
     ("localhost:65535", "localhost", 65535), (":8075", "", 8075),
     ("gitaly.example.com.:443", "gitaly.example.com.", 443),
     ("[fe80::1%eth0]:1", "fe80::1%eth0", 1)],
    ids=lambda value: str(value),
)  # fmt: skip
def test_listen_address_parse(text: str, host: str, port: int) -> None:
    address = ListenAddress.parse(text)
    assert (address.host, address.port) == (host, port)
    assert str(address) == text


def test_embedded_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = embedded_defaults()
    data = tmp_path / "trio-gitaly-data"
    assert [(s.name, s.path) for s in cfg.storage] == [("default", str(data / "repositories"))]
    assert (data / "repositories").is_dir()
    assert cfg.socket_path == str(data / "gitaly.socket")
    assert cfg.listen_addr == ListenAddress("127.0.0.1", 8075)
    assert cfg.prometheus_listen_addr == ListenAddress("127.0.0.1", 9236)
    assert embedded_defaults() == cfg  # idempotent once the directory exists


def test_relative_storage_path_is_absolutised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = parse(LISTEN + '[[storage]]\nname = "a"\npath = "x/../repos/"\n')
    assert cfg.storage[0].path == str(tmp_path / "repos")
    assert os.path.isabs(cfg.storage[0].path)


def test_load(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(_fill(GOOD, tmp_path))
    assert load(str(path)).storage[0].path == str(tmp_path / "repos")


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [("missing.toml", None, "no such file or directory"),
     ("directory", b"", "is a directory"),
     ("latin1.toml", b'socket_path = "caf\xe9"\n', "invalid TOML: not UTF-8")],
    ids=["missing", "directory", "not-utf8"],
)  # fmt: skip
def test_load_unreadable(tmp_path: Path, name: str, content: bytes | None, fragment: str) -> None:
    path = tmp_path / name
    if name == "directory":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load(str(path))
    assert info.value.key == "--config"
    assert fragment in info.value.problem


def test_log_format() -> None:
    assert log_format(config.LoggingConfig(format="text"), io.StringIO()) == "text"
    assert log_format(config.LoggingConfig(), io.StringIO()) == "json"
    primary, secondary = os.openpty()
    os.close(secondary)
    with os.fdopen(primary, "w") as terminal:
        assert log_format(config.LoggingConfig(), terminal) == "text"


def test_json_schema() -> None:
    schema = json_schema()
    definitions = schema["$defs"]
    properties = definitions["Config"]["properties"]
    assert set(properties) == set(Config.__struct_fields__)
    assert properties["graceful_restart_timeout"]["default"] == "1m"
    assert properties["listen_addr"]["type"] == "string"
    assert definitions["GrpcConfig"]["properties"]["tls_handshake_timeout"]["default"] == "10s"
    assert definitions["StorageConfig"]["additionalProperties"] is False
    assert '"null"' not in json.dumps(schema)  # TOML cannot express null

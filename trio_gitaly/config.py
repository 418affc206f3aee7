"""The server configuration: frozen msgspec structs decoded once from a Gitaly-style TOML file.

Key names follow upstream Gitaly's `config.toml` (an empty string means "not configured"),
except `[grpc]`, which is ours. Unlike Gitaly, unknown keys are an error: a typo should not
silently fall back to a default. Every problem surfaces as one `ConfigError` naming the key.

Adding a section is a struct plus one field on `Config`; its keys then appear in the JSON
Schema (`schemas/config.schema.json`) automatically.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from urllib.parse import urlsplit

import msgspec
import msgspec.inspect

from trio_gitaly.config_limits import (
    AdaptiveLimitingConfig,
    CgroupsConfig,
    ConcurrencyConfig,
    PackObjectsLimitingConfig,
    validate_adaptive_limiting,
    validate_cgroups,
    validate_concurrency,
    validate_pack_objects,
)
from trio_gitaly.config_values import ConfigError as ConfigError
from trio_gitaly.config_values import Duration as Duration
from trio_gitaly.config_values import ListenAddress as ListenAddress
from trio_gitaly.config_values import dec_hook as dec_hook
from trio_gitaly.config_values import duration_field
from trio_gitaly.config_values import enc_hook as enc_hook
from trio_gitaly.config_values import schema_hook as schema_hook
from trio_gitaly.config_workers import DailyMaintenanceConfig, validate_daily_maintenance
from trio_gitaly.defaults import EMBEDDED_DATA_DIR as EMBEDDED_DATA_DIR
from trio_gitaly.defaults import EMBEDDED_GATEWAY_LISTEN_ADDR as EMBEDDED_GATEWAY_LISTEN_ADDR
from trio_gitaly.defaults import EMBEDDED_LISTEN_ADDR as EMBEDDED_LISTEN_ADDR
from trio_gitaly.defaults import EMBEDDED_PROMETHEUS_LISTEN_ADDR as EMBEDDED_PROMETHEUS_LISTEN_ADDR

if TYPE_CHECKING:
    from typing import TextIO

DEFAULT_GRACEFUL_RESTART_TIMEOUT_S: Final = 60.0
DEFAULT_TLS_HANDSHAKE_TIMEOUT_S: Final = 10.0
# gRPC's customary default; large blobs are streamed in chunks well below it.
DEFAULT_MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
MIN_MAX_MESSAGE_BYTES: Final = 1024
MAX_MAX_MESSAGE_BYTES: Final = 256 * 1024 * 1024
DEFAULT_MAX_CONCURRENT_STREAMS: Final = 256
MAX_MAX_CONCURRENT_STREAMS: Final = 65536
DEFAULT_CATFILE_CACHE_SIZE: Final = 100
MAX_CATFILE_CACHE_SIZE: Final = 10000

# Gitaly's default read timeout for GitLab's internal API, in seconds.
DEFAULT_GITLAB_READ_TIMEOUT_S: Final = 300
GITLAB_URL_SCHEMES: Final = ("http", "https", "http+unix")

# Gitaly skips empty addresses (behaviour spec §11), so `listen_addr = ""` means "unset".
_ADDRESS_KEYS: Final = ("listen_addr", "tls_listen_addr", "prometheus_listen_addr")


class TlsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """TLS for `tls_listen_addr`: PEM certificate chain and private key files."""

    certificate_path: str = ""
    key_path: str = ""


class StorageConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A storage: a unique name and the directory holding its repositories."""

    name: str
    path: str


class GitConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The Git binary; empty `bin_path` means "git" on PATH.

    `catfile_cache_size` bounds the idle `git cat-file` processes kept for reuse; 0 means
    the default, as in Gitaly.
    """

    bin_path: str = ""
    catfile_cache_size: Annotated[int, msgspec.Meta(ge=0, le=MAX_CATFILE_CACHE_SIZE)] = (
        DEFAULT_CATFILE_CACHE_SIZE
    )


class LoggingConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Log output; no `format` means JSON when stderr is not a terminal, text otherwise."""

    format: Literal["json", "text"] | None = None
    level: Literal["debug", "info", "warn", "warning", "error"] = "info"


class AuthConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Token authentication; an empty `token` disables it, `transitioning` only counts failures."""

    token: str = ""
    transitioning: bool = False


class GrpcConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """gRPC transport limits (trio-gitaly only; Gitaly has no such section)."""

    max_message_bytes: Annotated[
        int, msgspec.Meta(ge=MIN_MAX_MESSAGE_BYTES, le=MAX_MAX_MESSAGE_BYTES)
    ] = DEFAULT_MAX_MESSAGE_BYTES
    max_concurrent_streams: Annotated[int, msgspec.Meta(ge=1, le=MAX_MAX_CONCURRENT_STREAMS)] = (
        DEFAULT_MAX_CONCURRENT_STREAMS
    )
    tls_handshake_timeout: Duration = duration_field(DEFAULT_TLS_HANDSHAKE_TIMEOUT_S)


class GitlabHttpSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the internal API is reached: read timeout (seconds), basic auth, extra CAs."""

    read_timeout: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_GITLAB_READ_TIMEOUT_S
    user: str = ""
    password: str = ""
    ca_file: str = ""
    ca_path: str = ""


class GitlabConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """GitLab's internal API, which pre- and post-receive hooks ask; no `url` skips it.

    `url` is http://, https:// or http+unix:// (the socket path percent-encoded); the
    shared secret is `secret`, or else the contents of `secret_file`.
    """

    url: str = ""
    relative_url_root: str = ""
    secret: str = ""
    secret_file: str = ""
    http_settings: GitlabHttpSettings = msgspec.field(
        default_factory=GitlabHttpSettings, name="http-settings"
    )


class HooksConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Server-wide custom hooks: `<custom_hooks_dir>/<hook>.d/*` run after a repository's own."""

    custom_hooks_dir: str = ""


class GatewayBasicAuth(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """HTTP basic auth for the gateway; an empty `username` turns it off."""

    username: str = ""
    password: str = ""


class GatewayConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """git's smart HTTP protocol at /<storage>/<relative_path> (trio-gitaly only).

    No `listen_addr` means no gateway; the embedded default serves on 127.0.0.1:8076.
    """

    listen_addr: ListenAddress | None = None
    basic_auth: GatewayBasicAuth = msgspec.field(default_factory=GatewayBasicAuth)


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """trio-gitaly configuration (Gitaly's config.toml keys)."""

    socket_path: str = ""
    listen_addr: ListenAddress | None = None
    tls_listen_addr: ListenAddress | None = None
    prometheus_listen_addr: ListenAddress | None = None
    runtime_dir: str = ""
    graceful_restart_timeout: Duration = duration_field(DEFAULT_GRACEFUL_RESTART_TIMEOUT_S)
    # Ours (Gitaly reads GITALY_PID_FILE only): the serving process's pid, across restarts.
    pid_file: str = ""
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    storage: tuple[StorageConfig, ...] = ()
    git: GitConfig = msgspec.field(default_factory=GitConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    grpc: GrpcConfig = msgspec.field(default_factory=GrpcConfig)
    gitlab: GitlabConfig = msgspec.field(default_factory=GitlabConfig)
    hooks: HooksConfig = msgspec.field(default_factory=HooksConfig)
    gateway: GatewayConfig = msgspec.field(default_factory=GatewayConfig)
    concurrency: tuple[ConcurrencyConfig, ...] = ()
    pack_objects_limiting: PackObjectsLimitingConfig = msgspec.field(
        default_factory=PackObjectsLimitingConfig
    )
    adaptive_limiting: AdaptiveLimitingConfig = msgspec.field(
        default_factory=AdaptiveLimitingConfig
    )
    cgroups: CgroupsConfig = msgspec.field(default_factory=CgroupsConfig)
    daily_maintenance: DailyMaintenanceConfig = msgspec.field(
        default_factory=DailyMaintenanceConfig
    )


def load(path: str) -> Config:
    """Read, decode and validate the TOML file at `path`; raise `ConfigError` on any problem."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        text = data.decode("utf-8")
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path!r}: {_strerror(exc)}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("--config", f"invalid TOML: not UTF-8 at byte {exc.start}") from None
    return parse(text)


def parse(text: str) -> Config:
    """Decode and validate TOML text; raise `ConfigError` on any problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"invalid TOML: {_lower_first(str(exc))}") from None
    for key in _ADDRESS_KEYS:
        if raw.get(key) == "":
            del raw[key]
    try:
        cfg = msgspec.convert(raw, Config, dec_hook=dec_hook)
    except msgspec.ValidationError as exc:
        raise _translate(exc) from None
    return _validate(cfg)


def embedded_defaults() -> Config:
    """The configuration used without a config file, rooted at ./trio-gitaly-data."""
    data_dir = os.path.abspath(EMBEDDED_DATA_DIR)
    cfg = Config(
        socket_path=os.path.join(data_dir, "gitaly.socket"),
        listen_addr=ListenAddress.parse(EMBEDDED_LISTEN_ADDR),
        prometheus_listen_addr=ListenAddress.parse(EMBEDDED_PROMETHEUS_LISTEN_ADDR),
        storage=(StorageConfig(name="default", path=os.path.join(data_dir, "repositories")),),
        gateway=GatewayConfig(listen_addr=ListenAddress.parse(EMBEDDED_GATEWAY_LISTEN_ADDR)),
    )
    return _validate(cfg)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (stored as schemas/config.schema.json)."""
    schema = msgspec.json.schema(Config, schema_hook=schema_hook)
    _adapt_schema(msgspec.inspect.type_info(Config), schema["$defs"])
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def log_format(cfg: LoggingConfig, stream: TextIO | None = None) -> Literal["json", "text"]:
    """The effective log format: as configured, else text on a terminal and JSON otherwise."""
    if cfg.format is not None:
        return cfg.format
    stream = sys.stderr if stream is None else stream
    return "text" if stream.isatty() else "json"


def _adapt_schema(info: msgspec.inspect.Type, definitions: dict[str, Any]) -> None:
    """Adapt msgspec's schema to TOML and add the factory defaults msgspec leaves out."""
    if isinstance(info, msgspec.inspect.UnionType):
        for member in info.types:
            _adapt_schema(member, definitions)
    elif isinstance(info, msgspec.inspect.VarTupleType | msgspec.inspect.ListType):
        _adapt_schema(info.item_type, definitions)
    elif isinstance(info, msgspec.inspect.StructType):
        properties = definitions[info.cls.__name__]["properties"]
        for field in info.fields:
            prop = properties[field.encode_name]
            variants = prop.get("anyOf", [])
            if len(variants) == 2 and {"type": "null"} in variants:
                # TOML has no null: an unset optional key is simply left out.
                del prop["anyOf"], prop["default"]
                prop.update(next(v for v in variants if v != {"type": "null"}))
            if field.default_factory is not msgspec.NODEFAULT:
                value = field.default_factory()
                if isinstance(value, Duration | ListenAddress):
                    prop["default"] = str(value)
            _adapt_schema(field.type, definitions)


_UNKNOWN_FIELD_RE: Final = re.compile(r"Object contains unknown field `(.*)`")
_MISSING_FIELD_RE: Final = re.compile(r"Object missing required field `(.*)`")
_AT_PATH_RE: Final = re.compile(r"(.*) - at `\$\.?(.*)`")


def _translate(exc: msgspec.ValidationError) -> ConfigError:
    """Turn msgspec's "<message> - at `$.a.b[0]`" into a ConfigError on key "a.b[0]"."""
    message, path = str(exc), ""
    if match := _AT_PATH_RE.fullmatch(message):
        message, path = match.groups()
    for pattern, problem in (
        (_UNKNOWN_FIELD_RE, "unknown key"),
        (_MISSING_FIELD_RE, "missing required key"),
    ):
        if match := pattern.fullmatch(message):
            key = f"{path}.{match[1]}" if path else match[1]
            return ConfigError(key, problem)
    return ConfigError(path or "--config", _lower_first(message.replace("`", "")))


def _validate(cfg: Config) -> Config:
    """Checks msgspec cannot express; returns `cfg` with absolute storage paths.

    Storage directories are created last, so that a config rejected for another reason
    leaves nothing behind.
    """
    if not cfg.storage:
        raise ConfigError("storage", "at least one storage is required")
    names: set[str] = set()
    for i, storage in enumerate(cfg.storage):
        if not storage.name:
            raise ConfigError(f"storage[{i}].name", "must not be empty")
        if storage.name in names:
            raise ConfigError(f"storage[{i}].name", f"duplicate storage name {storage.name!r}")
        names.add(storage.name)
    if not (cfg.socket_path or cfg.listen_addr or cfg.tls_listen_addr):
        raise ConfigError(
            "listen_addr", "no listener configured: set socket_path, listen_addr or tls_listen_addr"
        )
    _validate_tls(cfg)
    _validate_gitlab(cfg.gitlab)
    validate_concurrency(cfg.concurrency)
    validate_pack_objects(cfg.pack_objects_limiting)
    validate_adaptive_limiting(cfg.adaptive_limiting)
    validate_cgroups(cfg.cgroups)
    validate_daily_maintenance(cfg.daily_maintenance, [s.name for s in cfg.storage])
    if cfg.runtime_dir and not os.path.isdir(cfg.runtime_dir):
        raise ConfigError("runtime_dir", f"not an existing directory: {cfg.runtime_dir!r}")
    storages = tuple(
        msgspec.structs.replace(storage, path=_ensure_directory(f"storage[{i}].path", storage.path))
        for i, storage in enumerate(cfg.storage)
    )
    return msgspec.structs.replace(cfg, storage=storages)


def _validate_tls(cfg: Config) -> None:
    fields = (("certificate_path", cfg.tls.certificate_path), ("key_path", cfg.tls.key_path))
    for name, path in fields:
        if cfg.tls_listen_addr is not None and not path:
            raise ConfigError(f"tls.{name}", "required when tls_listen_addr is set")
        if path:
            try:
                with open(path, "rb") as f:
                    f.read(1)
            except OSError as exc:
                raise ConfigError(
                    f"tls.{name}", f"cannot read {path!r}: {_strerror(exc)}"
                ) from None


def _validate_gitlab(gitlab: GitlabConfig) -> None:
    if not gitlab.url:
        return
    scheme = urlsplit(gitlab.url).scheme
    if scheme not in GITLAB_URL_SCHEMES:
        raise ConfigError(
            "gitlab.url", f"unsupported scheme {scheme!r}: use http, https or http+unix"
        )
    if gitlab.secret or not gitlab.secret_file:
        return
    try:
        with open(gitlab.secret_file, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise ConfigError(
            "gitlab.secret_file", f"cannot read {gitlab.secret_file!r}: {_strerror(exc)}"
        ) from None


def _ensure_directory(key: str, path: str) -> str:
    """Create the directory if missing (the embedded default relies on this); return it absolute."""
    if not path:
        raise ConfigError(key, "must not be empty")
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(key, f"not a directory: {path!r}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(key, f"cannot create directory {path!r}: {_strerror(exc)}") from None
    return path


def _strerror(exc: OSError) -> str:
    return _lower_first(exc.strerror or str(exc))


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]

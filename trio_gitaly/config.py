"""The server configuration: frozen msgspec structs decoded once from a Gitaly-style TOML file.

Key names follow upstream Gitaly's `config.toml` (an empty string means "not configured"),
except `[grpc]`, which is ours. Unlike Gitaly, unknown keys are an error: a typo should not
silently fall back to a default. Every problem surfaces as one `ConfigError` naming the key.

Adding a section is a struct plus one field on `Config`; its keys then appear in the JSON
Schema (`schemas/config.schema.json`) automatically.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import tomllib
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, final

import msgspec
import msgspec.inspect

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

# Used when no config file is given: a self-contained data directory under the CWD.
EMBEDDED_DATA_DIR: Final = "trio-gitaly-data"
EMBEDDED_LISTEN_ADDR: Final = "127.0.0.1:8075"
EMBEDDED_PROMETHEUS_LISTEN_ADDR: Final = "127.0.0.1:9236"

# Gitaly skips empty addresses (behaviour spec §11), so `listen_addr = ""` means "unset".
_ADDRESS_KEYS: Final = ("listen_addr", "tls_listen_addr", "prometheus_listen_addr")

_UNIT_SECONDS: Final = {
    "ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6,
    "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}  # fmt: skip
_DURATION_PART: Final = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_DURATION_RE: Final = re.compile(rf"0|(?:{_DURATION_PART})+")
_DURATION_PATTERN: Final = rf"^(0|({_DURATION_PART})+)$"
_LABEL: Final = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME_RE: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_ADDRESS_PATTERN: Final = r"^(|(\[[0-9A-Fa-f:.]+(%[^\]]+)?\]|[A-Za-z0-9_.-]*):[0-9]{1,5})$"
_MAX_PORT: Final = 65535


@final
class Duration:
    """A non-negative span of time written as a Go duration string ("1m30s", "500ms", "0")."""

    __slots__ = ("seconds",)
    seconds: float

    def __init__(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"negative duration {seconds!r}")
        self.seconds = float(seconds)

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse a Go duration string; raise `ValueError` with a short message if invalid."""
        if not _DURATION_RE.fullmatch(text):
            raise ValueError(f'invalid duration {text!r}: expected a value like "1m30s" or "500ms"')
        parts = re.findall(_DURATION_PART, text)
        return cls(sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts))

    def __str__(self) -> str:
        """The shortest Go duration string for this span ("1m30s", "0.5s", "0")."""
        hours, rest = divmod(self.seconds, 3600.0)
        minutes, seconds = divmod(rest, 60.0)
        text = f"{int(hours)}h" if hours else ""
        text += f"{int(minutes)}m" if minutes else ""
        # Fixed notation: "%g" would give "1e-09s", which is not a Go duration.
        text += f"{seconds:.9f}".rstrip("0").rstrip(".") + "s" if seconds else ""
        return text or "0"

    def __repr__(self) -> str:
        return f"Duration(seconds={self.seconds!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and other.seconds == self.seconds

    def __hash__(self) -> int:
        return hash(self.seconds)


@final
class ListenAddress:
    """A TCP listen address "host:port"; the host is an IPv4 address, "[IPv6]" or a name.

    `host` holds IPv6 addresses without brackets; an empty host means all interfaces.
    """

    __slots__ = ("host", "port")
    host: str
    port: int

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """Parse "host:port"; raise `ValueError` with a short message if invalid."""
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ValueError(f"invalid address {text!r}: missing port")
        if not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > _MAX_PORT:
            raise ValueError(f"invalid address {text!r}: port must be a number from 0 to 65535")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"invalid address {text!r}: bad IPv6 host") from None
        elif ":" in host:
            raise ValueError(f"invalid address {text!r}: IPv6 hosts must be in brackets")
        elif re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"invalid address {text!r}: bad IPv4 host") from None
        elif host and not _HOSTNAME_RE.fullmatch(host):
            raise ValueError(f"invalid address {text!r}: bad host name")
        return cls(host, int(port))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __repr__(self) -> str:
        return f"ListenAddress({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ListenAddress) and other.host == self.host and other.port == self.port
        )

    def __hash__(self) -> int:
        return hash((self.host, self.port))


def dec_hook(type_: type, obj: Any) -> Any:
    """msgspec decode hook for `Duration` and `ListenAddress` (both TOML strings)."""
    if type_ is Duration or type_ is ListenAddress:
        if not isinstance(obj, str):
            raise TypeError(f"expected str, got {type(obj).__name__}")
        return type_.parse(obj)
    raise NotImplementedError(f"unsupported type {type_!r}")


def enc_hook(obj: Any) -> Any:
    """msgspec encode hook, the inverse of `dec_hook` (for dumping an effective config)."""
    if isinstance(obj, Duration | ListenAddress):
        return str(obj)
    raise NotImplementedError(f"unsupported type {type(obj)!r}")


def schema_hook(type_: type) -> dict[str, Any]:
    """msgspec JSON Schema hook: both custom types are patterned strings."""
    if type_ is Duration:
        return {
            "type": "string",
            "pattern": _DURATION_PATTERN,
            "description": 'A Go duration: "0" or numbers with units ns, us, ms, s, m, h, '
            'e.g. "1m30s".',
        }
    if type_ is ListenAddress:
        return {
            "type": "string",
            "pattern": _ADDRESS_PATTERN,
            "description": 'A TCP address "host:port" ("[v6]:port" for IPv6); '
            '"" means not configured.',
        }
    raise NotImplementedError(f"unsupported type {type_!r}")


def _duration_field(default_s: float) -> Any:
    # A factory, not a plain default: msgspec's schema generator cannot encode a Duration
    # default, so json_schema() fills these defaults in itself.
    return msgspec.field(default_factory=lambda: Duration(default_s))


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
    tls_handshake_timeout: Duration = _duration_field(DEFAULT_TLS_HANDSHAKE_TIMEOUT_S)


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """trio-gitaly configuration (Gitaly's config.toml keys)."""

    socket_path: str = ""
    listen_addr: ListenAddress | None = None
    tls_listen_addr: ListenAddress | None = None
    prometheus_listen_addr: ListenAddress | None = None
    runtime_dir: str = ""
    graceful_restart_timeout: Duration = _duration_field(DEFAULT_GRACEFUL_RESTART_TIMEOUT_S)
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    storage: tuple[StorageConfig, ...] = ()
    git: GitConfig = msgspec.field(default_factory=GitConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    grpc: GrpcConfig = msgspec.field(default_factory=GrpcConfig)


@final
class ConfigError(Exception):
    """An invalid configuration: `key` is a dotted path such as "storage[1].path"."""

    def __init__(self, key: str, problem: str) -> None:
        # Always one line: the CLI prints exactly one line per error.
        self.key = key
        self.problem = " ".join(problem.splitlines())
        super().__init__(key, self.problem)

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}"


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

"""The value types of config keys: Go durations and TCP listen addresses.

Both are TOML strings in the file; msgspec decodes them through `dec_hook`, encodes them
back through `enc_hook`, and describes them in the JSON Schema through `schema_hook`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final, final

import msgspec

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
class ConfigError(Exception):
    """An invalid configuration: `key` is a dotted path such as "storage[1].path"."""

    def __init__(self, key: str, problem: str) -> None:
        # Always one line: the CLI prints exactly one line per error.
        self.key = key
        self.problem = " ".join(problem.splitlines())
        super().__init__(key, self.problem)

    def __str__(self) -> str:
        return f"{self.key}: {self.problem}"


def duration_field(default_s: float) -> Any:
    """A struct field holding a Duration that defaults to `default_s` seconds."""
    # A factory, not a plain default: msgspec's schema generator cannot encode a Duration
    # default, so config.json_schema() fills these defaults in itself.
    return msgspec.field(default_factory=lambda: Duration(default_s))


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

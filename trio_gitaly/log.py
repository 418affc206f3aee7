"""Logging: JSON lines with Gitaly's field names, or rich text on a terminal.

Code logs through the standard library (`logging.getLogger("trio_gitaly.<component>")`)
and passes structured fields as `extra={"fields": {...}}`; `fields()` builds that. The
correlation id of the RPC being served comes from a context variable, so every line a
request causes (git processes included) carries it without being passed around.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from typing import IO, Any

import msgspec
from rich.console import Console
from rich.logging import RichHandler

CORRELATION_ID: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="")

# logrus' names, which Gitaly's log consumers parse.
_LEVEL_NAMES = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
ROOT = "trio_gitaly"


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: `log.info("msg", extra=fields(duration_ms=3))`."""
    return {"fields": values}


def component_of(logger_name: str) -> str:
    """The `component` field: the logger name below the package ("rpc", "runtime")."""
    return logger_name.removeprefix(ROOT + ".") if logger_name != ROOT else "server"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, msg, pid, component, then the fields."""

    def __init__(self) -> None:
        super().__init__()
        self._encoder = msgspec.json.Encoder()
        self._pid = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        seconds = record.created
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            + f".{int(seconds % 1 * 1000):03d}Z",
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
            "msg": record.getMessage(),
            "pid": self._pid,
            "component": component_of(record.name),
        }
        correlation = CORRELATION_ID.get()
        if correlation:
            entry["correlation_id"] = correlation
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.exc_info[1] is not None:
            entry.setdefault("error", str(record.exc_info[1]))
            entry["stacktrace"] = self.formatException(record.exc_info)
        return self._encoder.encode(entry).decode("utf-8", "replace")


class _FieldsFilter(logging.Filter):
    """For text output: appends the structured fields as key=value to the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        extra = dict(getattr(record, "fields", {}))
        correlation = CORRELATION_ID.get()
        if correlation:
            extra.setdefault("correlation_id", correlation)
        if extra and not getattr(record, "_fields_rendered", False):
            rendered = " ".join(f"{key}={value}" for key, value in extra.items())
            record.msg = f"{record.getMessage()}  {rendered}"
            record.args = None
            record._fields_rendered = True
        return True


def configure(*, format: str | None, level: str, stream: IO[str] | None = None) -> logging.Handler:
    """Send the package's logs to `stream` (stderr) as JSON or rich text.

    `format` None picks JSON when the stream is not a terminal, as a service manager
    or container runtime would collect it, and text when a person is watching.
    Returns the installed handler (tests may remove it).
    """
    stream = stream or sys.stderr
    if format is None:
        format = "text" if stream.isatty() else "json"
    handler: logging.Handler
    if format == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    else:
        handler = RichHandler(
            console=Console(file=stream, stderr=stream is sys.stderr),
            markup=False,
            show_path=False,
            rich_tracebacks=True,
        )
        handler.addFilter(_FieldsFilter())
    logger = logging.getLogger(ROOT)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(LEVELS.get(level, logging.INFO))
    logger.propagate = False
    return handler

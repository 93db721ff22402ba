"""The gateway's log format: text (default) or one JSON object per line (`VISIONRAG_LOG_FORMAT=json`).

A JSON line carries `time` (UTC, ISO 8601), `level`, `logger`, `message`, `exception` when there is
one, and what is known of the request being served: `tenant` (bound by gateway.auth) and
`exchange_id` (bound when the exchange is created, proxy.recorder). Those come from a context
variable: each request is its own task under uvicorn, and a stream's relay task inherits the
request's fields, so lines never carry another request's ids. A leaf module, like gateway.metrics.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

import orjson

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Copied on write (never mutated), so a task started earlier keeps the fields it inherited.
_fields: ContextVar[dict[str, str]] = ContextVar("visionrag_log_fields", default={})  # noqa: B039


def bind(**fields: str) -> None:
    """Add fields to every log line of the current request from here on."""
    _fields.set({**_fields.get(), **fields})


def bound() -> dict[str, str]:
    return _fields.get()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_fields.get(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class _GatewayHandler(logging.StreamHandler):
    """The root handler this module installs (recognised so that a second app does not add another)."""


def configure(log_format: LogFormat) -> None:
    """Set up the root logger once per process; with `json`, uvicorn's loggers write through it too.

    Called from create_app: under `uvicorn --factory` that is after uvicorn configured its own loggers,
    so their handlers can be replaced here (`visionrag serve` asks uvicorn not to configure them)."""
    if log_format == "text":
        logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT)
        return
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _GatewayHandler)), None)
    if handler is None:
        handler = _GatewayHandler()
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter())
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        # A logger without handlers is left alone: that is how `--no-access-log` silences access lines.
        if uvicorn_logger.handlers:
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True

"""Structured logging: one record shape (tick, event, context) as JSON lines or key=value, by config.

Every decision worth reading later (telemetry health, console audit, stability, promotion) is logged with
:func:`log_event`, which puts three fields on a standard-library record: ``event`` (a dotted name such as
``telemetry.drop_alert``), ``tick`` (the simulation tick, or None) and ``context`` (a flat mapping).
:func:`configure_logging` installs a formatter that renders them as one JSON object per line or as
``key=value`` pairs; ordinary ``logging`` calls come out in the same shape with an empty context.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
from typing import Any, TextIO

import orjson

FORMATS = ("json", "kv")
_HANDLER_NAME = "townlet.structured"


def _timestamp(record: logging.LogRecord) -> str:
    return _dt.datetime.fromtimestamp(record.created, tz=_dt.UTC).isoformat(timespec="milliseconds")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    event = getattr(record, "event", None) or record.getMessage()
    fields: dict[str, Any] = {
        "ts": _timestamp(record),
        "level": record.levelname.lower(),
        "logger": record.name,
        "event": event,
        "tick": getattr(record, "tick", None),
        "context": dict(getattr(record, "context", None) or {}),
    }
    message = record.getMessage()
    if message != event:
        fields["message"] = message
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts, level, logger, event, tick, context`` (+ ``message``, ``exc``)."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a JSON line (without the newline)."""
        return orjson.dumps(_fields(record), default=str).decode()


def _kv_value(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if text == "" or any(c in text for c in ' ="\n'):
        return orjson.dumps(text).decode()
    return text


class KeyValueFormatter(logging.Formatter):
    """``ts=… level=… logger=… event=… tick=… key=value…``: context keys are flattened into the line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as one ``key=value`` line."""
        fields = _fields(record)
        context = fields.pop("context")
        parts = [f"{k}={_kv_value(v)}" for k, v in fields.items() if v is not None]
        parts += [f"{k}={_kv_value(v)}" for k, v in context.items()]
        return " ".join(parts)


def formatter_for(fmt: str) -> logging.Formatter:
    """The formatter for ``json`` or ``kv``."""
    if fmt == "json":
        return JsonFormatter()
    if fmt == "kv":
        return KeyValueFormatter()
    raise ValueError(f"unknown log format {fmt!r} (json or kv)")


def configure_logging(fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> logging.Handler:
    """Send the ``townlet`` loggers to ``stream`` (stderr by default) in the chosen format.

    Calling it again replaces the handler it installed before, so a config reload can switch formats.
    """
    root = logging.getLogger("townlet")
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter_for(fmt))
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def reset_logging() -> None:
    """Remove the handler :func:`configure_logging` installed (tests, embedding applications)."""
    root = logging.getLogger("townlet")
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.setLevel(logging.NOTSET)


def log_event(
    logger: logging.Logger, event: str, tick: int | None = None, level: int = logging.INFO, **context: Any
) -> None:
    """Log one structured record: ``event`` name, ``tick`` and ``context`` keyword fields."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"event": event, "tick": tick, "context": context})

"""The console's audit log: one JSON line per command (principal, command, arguments, result, tick), fsync'd.

The file is only ever appended to. Each line is written with a single ``write`` on a file opened in append
mode, then flushed and (by default) fsync'd before the caller hears the result.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from townlet.logs import log_event

log = logging.getLogger("townlet.console")
MAX_REPR = 4096  # characters of an unserialisable payload kept in the audit line


class AuditLog:
    """Append-only JSONL audit trail.

    Args:
        path: The audit file (created with its folder).
        fsync: Force each line to disk before returning.
    """

    def __init__(self, path: str | Path, fsync: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.records = 0

    def record(self, **fields: Any) -> dict[str, Any]:
        """Append one record (a ``ts`` field is added) and log it as ``console.command``."""
        entry = {"ts": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"), **fields}
        try:
            line = orjson.dumps(entry, default=repr, option=orjson.OPT_NON_STR_KEYS) + b"\n"
        except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits in a hostile payload
            entry["args"] = repr(entry.get("args"))[:MAX_REPR]
            line = orjson.dumps(entry, default=repr, option=orjson.OPT_NON_STR_KEYS) + b"\n"
        with self._lock:
            os.write(self._fd, line)
            if self.fsync:
                os.fsync(self._fd)
            self.records += 1
        context = {k: v for k, v in fields.items() if k in ("principal", "role", "cmd", "cmd_id", "ok", "code")}
        log_event(log, "console.command", fields.get("tick"), **context)
        return entry

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

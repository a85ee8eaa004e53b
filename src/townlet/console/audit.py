"""The console's audit log: one bounded JSON line per command, fsync'd, rotated under a size cap; floods summarised.

Each line is written with a single ``write`` on a file opened in append mode, then (by default) fsync'd
before the caller hears the result. Three rules keep a hostile client from filling the disk:

- **bounded entries**: arguments and result data longer than ``console.audit.max_arg_bytes`` (as JSON) are
  replaced by ``{"truncated": true, "bytes": N, "sha256": DIGEST, "head": FIRST_CHARACTERS}``; messages,
  command names and ids are clipped;
- **refusal floods are summarised**: of the commands one principal (or, unauthenticated, one source address)
  gets refused or failed within ``console.audit.summary_s`` seconds, the first ``console.audit.refusal_lines``
  are written line by line and the rest counted into one ``{"summary": true, ...}`` line when the interval
  ends (also written on close);
- **rotation**: a write that would take the file past ``console.audit.max_bytes`` first renames it to
  ``AUDIT.1`` (replacing the previous one) and starts a new file, so the log takes at most twice the cap.
"""

from __future__ import annotations

import collections
import datetime as _dt
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from townlet.console.errors import MAX_MESSAGE, clip
from townlet.logs import log_event

log = logging.getLogger("townlet.console")
MAX_NAME = 64  # characters of a command name or principal
HEAD = 200  # characters of an oversized value kept, for a human to recognise it
MAX_WINDOWS = 10_000  # refusal windows held at once; the oldest is summarised early past this
MAX_NAMES = 20  # distinct command names counted per summary; the rest are "other"


def bounded(value: Any, limit: int) -> Any:
    """``value`` if its JSON is at most ``limit`` bytes, else a stand-in with its size, digest and head."""
    try:
        raw = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):  # e.g. integers beyond 64 bits in a hostile payload
        raw = repr(value).encode("utf-8", "replace")
    if len(raw) <= limit:
        return value
    return {
        "truncated": True,
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "head": raw[:HEAD].decode("utf-8", "replace"),
    }


@dataclass
class _Window:
    """One principal's (or source's) refusals within the current summary interval."""

    who: dict[str, Any]
    started: float
    first_ts: str
    written: int = 0
    suppressed: int = 0
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    cmds: collections.Counter[str] = field(default_factory=collections.Counter)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


class AuditLog:
    """Append-only JSONL audit trail with bounded entries, refusal summaries and size-capped rotation.

    Args:
        path: The audit file (created with its folder, mode 0600).
        fsync: Force each line to disk before returning.
        max_bytes: Rotate to ``PATH.1`` before the file would grow past this (0: never).
        max_arg_bytes: Arguments or result data longer than this (JSON) are replaced by a digest.
        refusal_lines: Refusals written in full per principal or source per interval; the rest are summarised.
        summary_s: The summary interval, in seconds.
        clock: Monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        path: str | Path,
        fsync: bool = True,
        max_bytes: int = 64 << 20,
        max_arg_bytes: int = 2048,
        refusal_lines: int = 10,
        summary_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.max_bytes = max_bytes
        self.max_arg_bytes = max_arg_bytes
        self.refusal_lines = refusal_lines
        self.summary_s = summary_s
        self.clock = clock
        self._lock = threading.Lock()
        self._fd = self._open()
        self.size = os.fstat(self._fd).st_size
        self.records = 0
        self.summarised = 0
        self.rotations = 0
        self._windows: dict[str, _Window] = {}
        self._next_sweep = clock() + summary_s

    @classmethod
    def from_config(cls, path: str | Path, console: Any) -> AuditLog:
        """An audit log with the ``console`` config section's fsync and ``audit`` limits."""
        a = console.audit
        return cls(path, console.audit_fsync, a.max_bytes, a.max_arg_bytes, a.refusal_lines, a.summary_s)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    # -- writing --------------------------------------------------------------------------------------

    def record(self, **fields: Any) -> dict[str, Any]:
        """Append one record now (bounded; a ``ts`` field is added) and log it as ``console.command``."""
        entry = self._entry(fields)
        with self._lock:
            self._write(entry)
            self._sweep_locked(force=False)
        self._log(fields)
        return entry

    def refusal(self, who: dict[str, Any], **fields: Any) -> dict[str, Any] | None:
        """Record a refused or failed command, or count it into ``who``'s summary once past the line budget.

        Args:
            who: ``{"principal": NAME}`` or ``{"source": ADDRESS}``: whose interval it counts against.
            **fields: The record (as for :meth:`record`).

        Returns:
            The entry written, or None when it was only counted.
        """
        key = orjson.dumps(who, option=orjson.OPT_SORT_KEYS).decode()
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.started >= self.summary_s:
                self._close_window(key)
                window = None
            if window is None:
                if len(self._windows) >= MAX_WINDOWS:
                    self._close_window(next(iter(self._windows)))
                window = self._windows[key] = _Window(who, now, _now())
            entry = None
            if window.written < self.refusal_lines:
                window.written += 1
                entry = self._entry(fields)
                self._write(entry)
            else:
                window.suppressed += 1
                window.codes[str(fields.get("code"))] += 1
                name = clip(fields.get("cmd"), MAX_NAME) if fields.get("cmd") is not None else "-"
                if name in window.cmds or len(window.cmds) < MAX_NAMES:
                    window.cmds[name] += 1
                else:
                    window.cmds["other"] += 1
            self._sweep_locked(force=False)
        if entry is not None:
            self._log(fields)
        return entry

    def sweep(self, force: bool = False) -> None:
        """Write the summaries of intervals that have ended (``force``: of every open interval)."""
        with self._lock:
            self._sweep_locked(force)

    def close(self) -> None:
        """Write pending summaries and close the file."""
        with self._lock:
            if self._fd < 0:
                return
            self._sweep_locked(force=True)
            os.close(self._fd)
            self._fd = -1

    # -- internals ------------------------------------------------------------------------------------

    def _entry(self, fields: dict[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {"ts": _now(), **fields}
        for name in ("args", "data"):
            if name in entry:
                entry[name] = bounded(entry[name], self.max_arg_bytes)
        for name, limit in (("message", MAX_MESSAGE), ("cmd", MAX_NAME), ("principal", MAX_NAME)):
            if isinstance(entry.get(name), str):
                entry[name] = clip(entry[name], limit)
        return entry

    def _write(self, entry: dict[str, Any]) -> None:
        if self._fd < 0:
            return
        line = orjson.dumps(entry, default=repr, option=orjson.OPT_NON_STR_KEYS) + b"\n"
        if self.max_bytes and self.size + len(line) > self.max_bytes and self.size > 0:
            os.close(self._fd)
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._fd = self._open()
            self.size = 0
            self.rotations += 1
        os.write(self._fd, line)
        if self.fsync:
            os.fsync(self._fd)
        self.size += len(line)
        self.records += 1

    def _sweep_locked(self, force: bool) -> None:
        now = self.clock()
        if not force and now < self._next_sweep:
            return
        self._next_sweep = now + min(self.summary_s, 5.0)
        for key in [k for k, w in self._windows.items() if force or now - w.started >= self.summary_s]:
            self._close_window(key)

    def _close_window(self, key: str) -> None:
        window = self._windows.pop(key)
        if window.suppressed == 0:
            return
        self.summarised += window.suppressed
        self._write(
            {
                "ts": _now(),
                "summary": True,
                **window.who,
                "from": window.first_ts,
                "written": window.written,
                "suppressed": window.suppressed,
                "codes": dict(window.codes),
                "cmds": dict(window.cmds),
            }
        )

    @staticmethod
    def _log(fields: dict[str, Any]) -> None:
        context = {k: v for k, v in fields.items() if k in ("principal", "role", "cmd", "cmd_id", "ok", "code")}
        if isinstance(context.get("cmd"), str):
            context["cmd"] = clip(context["cmd"], MAX_NAME)
        log_event(log, "console.command", fields.get("tick"), **context)

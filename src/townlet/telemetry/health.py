"""The periodic ``tick.health`` log line: tick timings, telemetry queues and drops, viewers, in one record.

A publishing town (``townlet serve`` always; ``townlet run`` when it has transports) logs one line every
``telemetry.health_log_s`` wall seconds from its ``telemetry`` phase. Its context fields are declared once in
:data:`FIELDS`: the JSON Schema of the whole record (:func:`record_schema`) and the table in
docs/ops/logs.md are both checked against them by the tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from townlet.logs import log_event

log = logging.getLogger("townlet.telemetry")
EVENT = "tick.health"
_NAT = {"type": "integer", "minimum": 0}
_MS = {"type": "number", "minimum": 0}
_OPTIONAL_NUMBER = {"type": ["number", "null"]}

FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "window": (_NAT, "ticks the timings cover (the last `telemetry.perf_window`, rounded down to a tenth)"),
    "agents": (_NAT, "agents living in the town"),
    "tick_ms_mean": (_MS, "mean wall milliseconds per tick over the window (all phases)"),
    "tick_ms_p50": (_MS, "median tick duration over the window (ms)"),
    "tick_ms_p99": (_MS, "99th-percentile tick duration over the window (ms)"),
    "tick_ms_max": (_MS, "slowest tick of the window (ms)"),
    "target_tick_ms": (_OPTIONAL_NUMBER, "target tick duration for this population (`telemetry.tick_target_ms`)"),
    "headroom": (_OPTIONAL_NUMBER, "`1 - tick_ms_mean / target_tick_ms`: share of the target unused (< 0: over)"),
    "ticks_per_s": (_MS, "ticks simulated per wall second since the previous line"),
    "queue_depth": (_NAT, "deepest telemetry queue, in ticks waiting, over all transports"),
    "dropped": (_NAT, "telemetry messages dropped since the start, all transports"),
    "drops": (_NAT, "telemetry messages dropped since the previous line"),
    "viewers": (_NAT, "WebSocket viewers connected"),
    "transports": (_NAT, "telemetry transports the town publishes to"),
}


def record_schema() -> dict[str, Any]:
    """JSON Schema of one ``tick.health`` record as the ``json`` log format writes it."""
    context = {
        "type": "object",
        "properties": {name: schema for name, (schema, _) in FIELDS.items()},
        "required": list(FIELDS),
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "ts": {"type": "string"},
            "level": {"const": "info"},
            "logger": {"const": log.name},
            "event": {"const": EVENT},
            "tick": _NAT,
            "context": context,
        },
        "required": ["ts", "level", "logger", "event", "tick", "context"],
        "additionalProperties": False,
    }


class HealthLog:
    """Decides when the next ``tick.health`` line is due and writes it.

    Args:
        every_s: Wall seconds between lines (0: never).
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = float(every_s)
        self.clock = clock
        self.lines = 0
        self._since = clock()
        self._since_tick: int | None = None
        self._dropped = 0

    def due(self, tick: int) -> bool:
        """Whether a line is due at ``tick`` (the first call only starts the clock)."""
        if self._since_tick is None:
            self._since, self._since_tick = self.clock(), tick
            return False
        return self.every_s > 0 and self.clock() - self._since >= self.every_s

    def emit(self, tick: int, perf: dict[str, Any], transports: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Log one line from the simulation's ``perf`` figures and each transport's health; returns its context."""
        now = self.clock()
        dropped = sum(int(h.get("dropped", 0)) for h in transports.values())
        elapsed = now - self._since
        since_tick = tick if self._since_tick is None else self._since_tick
        context: dict[str, Any] = {"window": perf["ticks"]}
        for name in (
            "agents",
            "tick_ms_mean",
            "tick_ms_p50",
            "tick_ms_p99",
            "tick_ms_max",
            "target_tick_ms",
            "headroom",
        ):
            context[name] = perf[name]
        context.update(
            ticks_per_s=round((tick - since_tick) / elapsed, 3) if elapsed > 0 else 0.0,
            queue_depth=max((int(h.get("queue_depth", 0)) for h in transports.values()), default=0),
            dropped=dropped,
            drops=max(dropped - self._dropped, 0),
            viewers=sum(int(h.get("clients", 0)) for h in transports.values()),
            transports=len(transports),
        )
        log_event(log, EVENT, tick, **context)
        self._since, self._since_tick, self._dropped = now, tick, dropped
        self.lines += 1
        return context

"""The live clock's pacing state: paused or running, at which speed; the live server reads it to pace ticks.

The simulation itself is never paced (training and benchmarks run flat out); this object only records
what operators asked for (console ``speed`` and ``pause``) so whoever drives ``Simulation.step`` in live
mode can wait :meth:`Clock.interval` seconds between ticks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

SPEEDS = {"1x": 1.0, "10x": 10.0, "100x": 100.0, "max": 0.0}


@dataclass
class Clock:
    """Pacing state for live mode.

    Attributes:
        base_interval: Wall seconds per tick at 1x (``time.live_tick_seconds``).
        speed: One of ``1x``, ``10x``, ``100x``, ``max``.
        paused: Whether the live loop should hold the town still.
        changed: Set whenever speed or pause changes, so a sleeping live loop can wake early.
    """

    base_interval: float = 0.25
    speed: str = "1x"
    paused: bool = False
    changed: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        del state["changed"]  # a wake-up signal for a live loop in this process only
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.changed = threading.Event()

    def set_speed(self, speed: str) -> None:
        """Switch speed (``1x``, ``10x``, ``100x`` or ``max``)."""
        if speed not in SPEEDS:
            raise ValueError(f"unknown speed {speed!r} (one of {', '.join(SPEEDS)})")
        self.speed = speed
        self.changed.set()

    def set_paused(self, paused: bool) -> None:
        """Pause or resume."""
        self.paused = bool(paused)
        self.changed.set()

    def interval(self) -> float:
        """Wall seconds to wait between ticks now (0 at ``max``; the caller checks ``paused`` first)."""
        factor = SPEEDS[self.speed]
        return self.base_interval / factor if factor else 0.0

    def as_dict(self) -> dict[str, object]:
        """The pacing state as plain data (telemetry and the console ``status`` command)."""
        return {"speed": self.speed, "paused": self.paused, "interval_s": round(self.interval(), 6)}

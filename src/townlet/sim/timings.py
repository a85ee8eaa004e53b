"""Tick timings over a rolling window: per-phase means, tick-duration percentiles, the slowest ticks, headroom.

Every timed :class:`~townlet.sim.simulation.Simulation` keeps one, whether or not anything publishes telemetry
or watches, so ``health``, ``/metrics``, ``bench`` and the ``tick.health`` log line always describe the last
``telemetry.perf_window`` ticks. Per tick it stores one duration in a preallocated ring (the tick's phases
summed); per-phase sums come from the simulation's running totals, marked every tenth of the window, so every
figure covers the same ticks: the last ``window`` ticks rounded down to a whole tenth of the window (at least
nine tenths of it once the window has filled).

A timed tick hands over its clock reads (one before the first phase and one after each): they wait in a list
and are folded into the running totals, column by column, at each mark and whenever the totals are read
(:meth:`TickTimings.fold`), which costs a small fraction of adding every phase's time to a dict every tick.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

BLOCKS = 10  # phase totals are marked this many times per window


class TickTimings:
    """A rolling window of tick durations and per-phase times.

    Args:
        phase_total: The simulation's running seconds per phase (read, never written).
        window: Ticks the figures cover.
        slowest: How many of the window's slowest ticks :meth:`summary` lists.
    """

    def __init__(self, phase_total: dict[str, float], window: int, slowest: int) -> None:
        self.window = int(window)
        self.keep = int(slowest)
        self.block = max(1, self.window // BLOCKS)
        self.recorded = 0
        self._phase_total = phase_total
        self._seconds = [0.0] * self.window  # plain lists: a per-tick store costs a fraction of a numpy one
        self._ticks = [-1] * self.window
        self._next = 0
        self._marks: deque[tuple[int, dict[str, float]]] = deque([(0, dict(phase_total))], maxlen=BLOCKS + 1)
        self._pending: list[list[float]] = []  # clock reads of timed ticks not yet folded into the totals
        self._phases: object = None  # the phase list those reads were taken over, and its names
        self.names: tuple[str, ...] = ()  # the phases' names, in order

    def record_phases(self, tick: int, phases: list[tuple[str, Any]], reads: list[float]) -> None:
        """A timed tick: ``reads`` are the clock before ``phases`` ran and after each (one more than phases)."""
        if phases is not self._phases or len(phases) != len(self.names):
            self.fold()
            self._phases, self.names = phases, tuple(name for name, _ in phases)
        self._pending.append(reads)
        self.record(tick, reads[-1] - reads[0])

    def fold(self) -> dict[str, float]:
        """Add the pending ticks' phase times to the running totals; return the totals."""
        total = self._phase_total
        if self._pending:
            # A phase's time summed over ticks is the sum of its end reads less the sum of its start reads.
            sums = [math.fsum(column) for column in zip(*self._pending, strict=True)]
            self._pending.clear()
            for i, name in enumerate(self.names):
                total[name] = total.get(name, 0.0) + (sums[i + 1] - sums[i])
        return total

    def record(self, tick: int, seconds: float) -> None:
        """One tick took ``seconds`` (all its phases); called by the simulation after each timed tick."""
        i = self._next
        self._seconds[i] = seconds
        self._ticks[i] = tick
        self._next = i + 1 if i + 1 < self.window else 0
        self.recorded += 1
        if self.recorded % self.block == 0:
            self._marks.append((self.recorded, dict(self.fold())))

    def summary(self, agents: int, target_ms: float | None) -> dict[str, Any]:
        """The window's figures (milliseconds), with the target for ``agents`` and the headroom against it.

        Returns:
            ``window`` (configured ticks), ``ticks`` (ticks covered), ``tick_ms_mean``, ``tick_ms_p50``,
            ``tick_ms_p99``, ``tick_ms_max``, ``phase_ms`` (mean per phase), ``slowest`` (``tick``, ``ms``;
            slowest first), ``agents``, ``target_tick_ms`` and ``headroom`` (``1 - mean / target``: the share of
            the target left unused, negative when over it; both None without a target).
        """
        start, then = next(m for m in self._marks if self.recorded - m[0] <= self.window)
        n = self.recorded - start
        out: dict[str, Any] = {"window": self.window, "ticks": n, "agents": int(agents)}
        if n == 0:
            out.update(
                tick_ms_mean=0.0,
                tick_ms_p50=0.0,
                tick_ms_p99=0.0,
                tick_ms_max=0.0,
                phase_ms={},
                slowest=[],
                target_tick_ms=target_ms,
                headroom=None,
            )
            return out
        idx = np.arange(self._next - n, self._next) % self.window
        seconds = np.asarray(self._seconds)
        ms = seconds[idx] * 1000.0
        ordered = np.sort(ms)
        mean = float(ms.mean())
        now = self.fold()
        out["tick_ms_mean"] = round(mean, 4)
        out["tick_ms_p50"] = round(float(ordered[min(n - 1, n // 2)]), 4)
        out["tick_ms_p99"] = round(float(ordered[min(n - 1, int(0.99 * n))]), 4)
        out["tick_ms_max"] = round(float(ordered[-1]), 4)
        out["phase_ms"] = {
            name: round(max(total - then.get(name, 0.0), 0.0) * 1000.0 / n, 4) for name, total in now.items()
        }
        top = idx[np.argsort(-seconds[idx], kind="stable")[: self.keep]]
        out["slowest"] = [{"tick": self._ticks[i], "ms": round(self._seconds[i] * 1000.0, 3)} for i in top.tolist()]
        out["target_tick_ms"] = None if target_ms is None else round(target_ms, 4)
        out["headroom"] = None if target_ms is None else round(1.0 - mean / target_ms, 4)
        return out

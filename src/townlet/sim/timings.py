"""Tick timings over a rolling window: per-phase means, tick-duration percentiles, the slowest ticks, headroom.

Every timed :class:`~townlet.sim.simulation.Simulation` keeps one, whether or not anything publishes telemetry
or watches, so ``health``, ``/metrics``, ``bench`` and the ``tick.health`` log line always describe the last
``telemetry.perf_window`` ticks. Per tick it stores one duration in a preallocated ring (the tick's phases
summed); per-phase sums come from the simulation's running totals, marked every tenth of the window, so every
figure covers the same ticks: the last ``window`` ticks rounded down to a whole tenth of the window (at least
nine tenths of it once the window has filled).

A timed tick hands over its clock reads (one before the first phase and one after each): they wait in a list
and are folded into the window and the running totals (column by column) at each mark and whenever anything
reads them (:meth:`TickTimings.fold`), a small fraction of the cost of adding every phase's time to a dict
every tick.
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
        self._pending: list[list[float]] = []  # clock reads of timed ticks not yet folded in (up to the next mark)
        self._pending_ticks: list[int] = []
        self._phases: object = None  # the phase list those reads were taken over, and its names
        self.names: tuple[str, ...] = ()  # the phases' names, in order

    def record_phases(self, tick: int, phases: list[tuple[str, Any]], reads: list[float]) -> None:
        """A timed tick: ``reads`` are the clock before ``phases`` ran and after each (one more than phases)."""
        if phases is not self._phases or len(phases) != len(self.names):
            self.fold()
            self._phases, self.names = phases, tuple(name for name, _ in phases)
        pending = self._pending
        pending.append(reads)
        self._pending_ticks.append(tick)
        if len(pending) + self.recorded % self.block >= self.block:  # the next mark is due
            self.fold()

    def fold(self) -> dict[str, float]:
        """Bring the pending timed ticks into the window and the running totals; return the totals."""
        pending, total = self._pending, self._phase_total
        if pending:
            # A phase's time summed over ticks is the sum of its end reads less the sum of its start reads.
            sums = [math.fsum(column) for column in zip(*pending, strict=True)]
            for i, name in enumerate(self.names):
                total[name] = total.get(name, 0.0) + (sums[i + 1] - sums[i])
            ticks = self._pending_ticks
            self._pending, self._pending_ticks = [], []
            for tick, reads in zip(ticks, pending, strict=True):
                self._store(tick, reads[-1] - reads[0])
        return total

    def record(self, tick: int, seconds: float) -> None:
        """One tick took ``seconds`` (all its phases; untimed phases: nothing to add to the totals)."""
        self.fold()
        self._store(tick, seconds)

    def _store(self, tick: int, seconds: float) -> None:
        i = self._next
        self._seconds[i] = seconds
        self._ticks[i] = tick
        self._next = i + 1 if i + 1 < self.window else 0
        self.recorded += 1
        if self.recorded % self.block == 0:  # (the totals hold every tick up to here: pending ticks fold at marks)
            self._marks.append((self.recorded, dict(self._phase_total)))

    def summary(self, agents: int, target_ms: float | None) -> dict[str, Any]:
        """The window's figures (milliseconds), with the target for ``agents`` and the headroom against it.

        Returns:
            ``window`` (configured ticks), ``ticks`` (ticks covered), ``tick_ms_mean``, ``tick_ms_p50``,
            ``tick_ms_p99``, ``tick_ms_max``, ``phase_ms`` (mean per phase), ``slowest`` (``tick``, ``ms``;
            slowest first), ``agents``, ``target_tick_ms`` and ``headroom`` (``1 - mean / target``: the share of
            the target left unused, negative when over it; both None without a target).
        """
        now = self.fold()
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

"""Encoding one tick: the state, its diff from the previous tick, and the tick's events, as JSON lines.

The first tick encoded (and any consumer that needs a base) gets a ``snapshot``; every other tick is a
``diff`` (a merge patch). Event lines follow, one per event. The encoder also keeps the parts of the state
that only the stream knows: recent narration lines and rolling KPI windows (``stability``).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from townlet.narration.templates import CATEGORIES
from townlet.sim.kpis import KpiAccumulator, WindowStats
from townlet.sim.sidecars import capture_fields, check_fields, restore_fields
from townlet.telemetry.diff import make_patch
from townlet.telemetry.outbox import Batch
from townlet.telemetry.schema import SCHEMA_ID
from townlet.telemetry.state import StateBuilder
from townlet.world.events import Event, EventKind

if TYPE_CHECKING:
    from townlet.config.models import TelemetryConfig
    from townlet.sim.kpis import KpiTracker
    from townlet.sim.simulation import Simulation
    from townlet.world.state import World

_STATS = tuple(f.name for f in dataclasses.fields(WindowStats))  # the open window's counts, as a snapshot holds them


class KpiWindows:
    """Rolling KPI windows of a fixed length: a :class:`~townlet.sim.kpis.KpiAccumulator` over the town.

    Window ``k`` holds the ticks ``k * window`` to ``(k + 1) * window - 1`` (the first one starts where the
    encoder did); like the rest of the encoder, it folds from a phase of the tick (the publisher's), after
    the ``kpis`` phase has counted it. These are the ``stability`` section; a live town's stability monitor
    adds its canaries to it (:attr:`TelemetryEncoder.stability_source`).
    """

    FIELDS = ("window", "windows", "closed", "section")  # a snapshot carries these and the open window's
    # counts (``stats``, see :meth:`TelemetryEncoder.sidecar_state`)

    def __init__(self, world: World, kpis: KpiTracker, window: int) -> None:
        self.window = window
        self.kpis = kpis
        self.ticks_per_day = world.ticks_per_day
        self.windows = 0
        self.closed: deque[dict[str, Any]] = deque(maxlen=2)
        a = world.agents
        self.open = KpiAccumulator(1, a.capacity, world.config.needs.ok_threshold, a.alive, world.tick)
        self.section: dict[str, Any] = {"window_ticks": window, "windows": 0}

    @property
    def stats(self) -> WindowStats:
        """The open window's counts so far."""
        return WindowStats.of(self.open.counts[0], int(self.open.start[0]))

    @stats.setter
    def stats(self, stats: WindowStats) -> None:
        """Reopen the window from saved counts (a restored run)."""
        self.open.counts[0] = stats.vector()
        self.open.start[0] = stats.start

    def fold(self, world: World) -> None:
        """Add the tick just simulated (after the KPI phase counted it); close the window on its last tick."""
        k = self.kpis
        self.open.add(k.last, k.worst, world.agents.alive, k.arrived)
        if world.tick % self.window == self.window - 1:  # the encoder runs as a phase: ``world.tick`` is this tick
            self._close(world)

    def _close(self, world: World) -> None:
        start = int(self.open.start[0])
        s = WindowStats.of(self.open.close(world.agents.alive, world.tick + 1)[0], start)
        at = s.agent_ticks
        self.closed.appendleft(
            {
                "start": s.start,
                "end": int(world.tick),
                "agent_ticks": at,
                "need_ok_share": round(s.need_ok_share, 4),
                "lateness": round(s.lateness, 4),
                "arrivals": s.arrivals,
                "late_arrivals": int(s.late),
                "collapses": s.collapses,
                "exits": s.exits,
                "option_starts_per_agent_day": round(s.option_starts * self.ticks_per_day / at, 4) if at else 0.0,
                "chats": s.chats,
            }
        )
        self.windows += 1
        self.section = {"window_ticks": self.window, "windows": self.windows, "last": self.closed[0]}
        if len(self.closed) > 1:
            self.section["previous"] = self.closed[1]


class TelemetryEncoder:
    """Turns each tick of a simulation into a :class:`Batch` of JSON lines.

    Args:
        sim: The simulation (read only).
        cfg: The ``telemetry`` config section.
    """

    FIELDS = ("narration_lines", "narration", "names")  # what a snapshot carries besides the windows

    def __init__(self, sim: Simulation, cfg: TelemetryConfig) -> None:
        self.sim = sim
        self.cfg = cfg
        self.builder = StateBuilder(sim, cfg.digits)
        self.kpi_windows = KpiWindows(sim.world, sim.kpis, cfg.stability_window)
        self.narration_lines: deque[dict[str, Any]] = deque(maxlen=cfg.narration_lines)
        self.narration: list[dict[str, Any]] = []
        self.sections: dict[str, Any] = {}
        self.state: dict[str, Any] | None = None
        self.names: dict[int, str] = {}
        self._known: set[str] = set()
        # The live stability monitor's canaries and promotion state (set by the live server's policy desk).
        self.stability_source: Callable[[], dict[str, Any]] | None = None
        self._stability: tuple[Any, Any, dict[str, Any]] = (None, None, {})

    def stability(self) -> dict[str, Any]:
        """The ``stability`` section: the rolling KPI windows, and the live canaries when a monitor runs."""
        windows = self.kpi_windows.section
        live = self.stability_source() if self.stability_source is not None else None
        if live is None:
            return windows
        last_windows, last_live, merged = self._stability
        if windows is not last_windows or live is not last_live:  # rebuilt only when a part changed
            merged = {**windows, **live}
            self._stability = (windows, live, merged)
        return merged

    def sidecar_state(self) -> dict[str, Any]:
        """What the stream knows beyond the town, for a snapshot: the KPI windows, narration lines, names."""
        windows = capture_fields(self.kpi_windows, KpiWindows.FIELDS)
        windows["stats"] = dataclasses.asdict(self.kpi_windows.stats)
        return {"windows": windows, **capture_fields(self, TelemetryEncoder.FIELDS)}

    def restore_sidecar(self, state: dict[str, Any]) -> None:
        """Put back what :meth:`sidecar_state` captured (the next tick is encoded as a snapshot).

        Raises:
            ValueError: state of another shape, or windows of another length.
        """
        state = dict(state)
        windows = state.pop("windows", None)
        if not isinstance(windows, dict) or windows.get("window") != self.kpi_windows.window:
            raise ValueError(f"telemetry windows must be {self.kpi_windows.window} ticks long, as configured")
        windows = dict(windows)
        stats = windows.pop("stats", None)
        base = windows.pop("base_agent_ticks", None), windows.pop("base_need_ok", None)
        if isinstance(stats, dict) and all(type(b) is int for b in base):
            # Written before the windows counted agent-ticks themselves: the run's totals as the window opened.
            kpis = self.kpi_windows.kpis
            stats = {**stats, "agent_ticks": kpis.agent_ticks - base[0], "need_ok_ticks": kpis.need_ok_ticks - base[1]}
        check_fields(self.kpi_windows, windows, KpiWindows.FIELDS, "telemetry.windows")
        check_fields(self, state, TelemetryEncoder.FIELDS, "telemetry")
        check_fields(self.kpi_windows.stats, stats, _STATS, "telemetry.windows.stats")
        restore_fields(self.kpi_windows, windows, KpiWindows.FIELDS)
        self.kpi_windows.stats = WindowStats(**stats)
        restore_fields(self, state, TelemetryEncoder.FIELDS)
        if self.builder.private:
            self._known = set(self.names.values())
        self.state = None

    def _name(self, slot: int) -> str:
        name = self.sim.world.agents.ids[slot] if 0 <= slot < self.sim.world.agents.capacity else None
        return self.builder.public(name or self.names.get(slot, "?"))  # a leaver keeps last tick's name

    def event(self, e: Event) -> dict[str, Any]:
        """One event as a telemetry message."""
        out: dict[str, Any] = {"type": "event", "tick": int(e.tick), "kind": e.kind.value}
        if e.agent >= 0:
            out["agent"] = self._name(e.agent)
        if e.other >= 0:
            out["other"] = self._name(e.other)
        objects = self.sim.world.objects
        if 0 <= e.obj < objects.count:
            out["object"] = objects.ids[e.obj]
        if e.value and math.isfinite(e.value):
            out["value"] = round(float(e.value), self.cfg.digits)
        if e.detail:
            detail = e.detail
            if self.builder.private and (detail in self.sim.world.agents.slot_of or detail in self._known):
                detail = self.builder.public(detail)  # events that name an agent in their detail
            out["detail"] = detail
        return out

    def _fold_narration(self, events: list[Event]) -> None:
        added = False
        for e in events:
            if e.kind is EventKind.NARRATION and self.cfg.narration_lines:
                line: dict[str, Any] = {"tick": int(e.tick), "text": e.detail}
                if e.agent >= 0:
                    line["agent"] = self._name(e.agent)
                if 0 <= int(e.value) < len(CATEGORIES):
                    line["category"] = CATEGORIES[int(e.value)]
                self.narration_lines.append(line)
                added = True
        if added:
            self.narration = list(self.narration_lines)

    def skip(self) -> None:
        """Fold a tick nobody receives: windows and narration stay current, the next tick is a snapshot."""
        self.kpi_windows.fold(self.sim.world)
        self._fold_narration(self.sim.world.events)
        self.state = None

    def encode(self, extra_events: list[dict[str, Any]] = (), sections: dict[str, Any] | None = None) -> Batch:  # type: ignore[assignment]
        """Encode the tick just simulated.

        Args:
            extra_events: Event messages from telemetry itself (transport alerts), sent after the world's.
            sections: Replacement ``perf`` / ``transports`` sections, when due.
        """
        sim, w = self.sim, self.sim.world
        events = w.events
        self.kpi_windows.fold(w)
        self._fold_narration(events)
        if sections:
            self.sections.update(sections)
        state = self.builder.build()
        state["stability"] = self.stability()
        state["narration"] = self.narration
        state.update(self.sections)
        dumps = orjson.dumps
        event_lines = b"".join(dumps(self.event(e)) + b"\n" for e in events)
        event_lines += b"".join(dumps(e) + b"\n" for e in extra_events)
        count = 1 + len(events) + len(extra_events)
        previous, self.state = self.state, state
        tick = int(w.tick)
        if previous is None:
            diff = b""
        else:
            diff = dumps({"type": "diff", "tick": tick, "patch": make_patch(previous, state)}) + b"\n" + event_lines
        header = {
            "type": "snapshot",
            "schema": SCHEMA_ID,
            "tick": tick,
            "config_id": sim.loaded.config_id,
            "seed": int(sim.seed),
        }
        if sim.applied_migrations:
            header["migrations"] = sim.applied_migrations

        def snapshot() -> bytes:
            return dumps({**header, "state": state}) + b"\n" + event_lines

        ids = w.agents.ids
        self.names = {slot: ids[slot] or "?" for slot in w.agents.slots().tolist()}
        if self.builder.private:
            self._known = set(self.names.values())
        batch = Batch(tick, diff, count, snapshot)
        if previous is None:
            batch.diff = batch.snapshot()  # nobody has a base yet: the first tick is a snapshot for everyone
        return batch

    def amend(self, events: list[Event]) -> Batch:
        """Re-encode the last tick after changes made between two ticks (console commands in a paused live town).

        Time does not advance: the state keeps the last tick's number and clock, so both forms of the batch
        are the snapshot form (every consumer rebases on it), followed by ``events``, what the changes
        emitted. The next tick's diff applies to this amended state.
        """
        self._fold_narration(events)
        state = self.builder.build(tick=self.sim.world.tick - 1)  # labelled with the last tick simulated
        state["stability"] = self.stability()
        state["narration"] = self.narration
        state.update(self.sections)
        dumps = orjson.dumps
        self.state = state
        message = self.snapshot_message()
        data = dumps(message) + b"\n" + b"".join(dumps(self.event(e)) + b"\n" for e in events)
        return Batch(int(state["tick"]), data, 1 + len(events), lambda: data)

    def snapshot_message(self) -> dict[str, Any]:
        """The latest snapshot as a message dict (the console, tests)."""
        if self.state is None:
            raise RuntimeError("nothing encoded yet")
        message = {
            "type": "snapshot",
            "schema": SCHEMA_ID,
            "tick": self.state["tick"],
            "config_id": self.sim.loaded.config_id,
            "seed": int(self.sim.seed),
            "state": self.state,
        }
        if self.sim.applied_migrations:
            message["migrations"] = self.sim.applied_migrations
        return message

"""KPIs: their definitions, the per-tick counts of a town, and the one accumulator of windowed views.

- :func:`attendance`, :func:`lateness`, :func:`need_ok_share`: the definitions every view uses (the run's
  totals, telemetry's stability windows, training windows, evaluation scorecards, the stability monitor).
- :class:`KpiTracker`: counts each tick's KPI terms once (the ``kpis`` phase), as a vector in
  :data:`COUNTS` order, and keeps the running totals since the town started (``run --json``).
- :class:`KpiAccumulator`: the one windowed view, vectorised over towns: it adds those counts into open
  windows, follows who was present all window and their worst need, and closes windows into
  :class:`WindowStats` records. Telemetry's stability windows (``townlet.telemetry.encoder``), training
  windows (``townlet.training.windows``) and :class:`KpiMeter` (evaluation, the stability monitor, the
  anneal) are all built on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from townlet.world.events import Event, EventKind

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation
    from townlet.world.state import World


def attendance(attended: float, absent: float) -> float:
    """Shifts attended / shifts resolved (attended + absent); 1.0 when none resolved."""
    resolved = attended + absent
    return attended / resolved if resolved else 1.0


def lateness(late: float, arrived: float) -> float:
    """Late arrivals / arrivals (or shifts attended); 0.0 with none."""
    return late / arrived if arrived else 0.0


def need_ok_share(ok_ticks: float, agent_ticks: float) -> float:
    """Share of living agent-ticks with every need below ``needs.ok_threshold``; 1.0 with none."""
    return ok_ticks / agent_ticks if agent_ticks else 1.0


COUNTED = {
    EventKind.COLLAPSE: "collapses",
    EventKind.CHAT: "chats",
    EventKind.QUEUE_JOINED: "queue_joins",
    EventKind.PURCHASE: "purchases",
    EventKind.AFFORDANCE_COMPLETED: "affordances_completed",
    EventKind.AFFORDANCE_FAILED: "affordances_failed",
    EventKind.OPTION_FAILED: "options_failed",
    EventKind.JOB_LOST: "jobs_lost",
    EventKind.RENT_UNPAID: "rent_unpaid",
    EventKind.HOOK_ERROR: "hook_errors",
    EventKind.AGENT_ARRIVED: "arrivals",
    EventKind.NARRATION: "narrations",
    EventKind.PERTURBATION_STARTED: "perturbations",
}


@dataclass
class WindowStats:
    """Counts over a span of ticks (a window or a day); the rates are properties.

    Attributes:
        start / ticks: First tick and length of the span.
        agent_ticks / need_ok_ticks: Living agent-ticks, and those with every need below the ok threshold.
        arrivals / late / absences: Shift arrivals, late ones among them, and shifts missed.
        collapses / exits: Hunger collapses, agents who left town.
        option_starts / switches: Options started, and starts that abandoned a running option.
        chats: Chats (successful or not).
        thrash: Switches that abandoned an option younger than ``stability.thrash_ticks``.
        reward_sum: Sum of per-agent rewards.
        present / sufficient: Agents there for the whole span, and those whose needs all stayed below ok.
    """

    start: int = 0
    ticks: int = 0
    agent_ticks: int = 0
    need_ok_ticks: int = 0
    arrivals: int = 0
    late: int = 0
    absences: int = 0
    collapses: int = 0
    exits: int = 0
    option_starts: int = 0
    switches: int = 0
    thrash: int = 0
    reward_sum: float = 0.0
    present: int = 0
    sufficient: int = 0
    chats: int = 0

    def merge(self, other: WindowStats) -> WindowStats:
        """The stats of both spans together (``start`` of the first)."""
        out = WindowStats(start=min(self.start, other.start) if self.ticks else other.start)
        for f in fields(self):
            if f.name != "start":
                setattr(out, f.name, getattr(self, f.name) + getattr(other, f.name))
        return out

    @property
    def attendance(self) -> float:
        """Arrivals / (arrivals + absences); 1.0 with no shift due."""
        return attendance(self.arrivals, self.absences)

    @property
    def lateness(self) -> float:
        """Late arrivals / arrivals; 0.0 with none."""
        return lateness(self.late, self.arrivals)

    @property
    def need_ok_share(self) -> float:
        """Share of agent-ticks with every need below the ok threshold."""
        return need_ok_share(self.need_ok_ticks, self.agent_ticks)

    @property
    def self_sufficiency(self) -> float:
        """Share of agents present all span whose needs all stayed below the ok threshold."""
        return self.sufficient / self.present if self.present else 1.0

    @property
    def switch_rate(self) -> float:
        """Share of option starts that abandoned a running option."""
        return self.switches / self.option_starts if self.option_starts else 0.0

    @property
    def thrash_rate(self) -> float:
        """Share of option starts that abandoned a freshly started option (a quick change of mind)."""
        return self.thrash / self.option_starts if self.option_starts else 0.0

    @property
    def reward_mean(self) -> float:
        """Mean reward per agent-tick."""
        return self.reward_sum / self.agent_ticks if self.agent_ticks else 0.0

    def kpis(self) -> dict[str, float]:
        """The rates by scorecard name."""
        return {
            "attendance": round(self.attendance, 4),
            "lateness": round(self.lateness, 4),
            "need_ok_share": round(self.need_ok_share, 4),
            "self_sufficiency": round(self.self_sufficiency, 4),
            "option_switch_rate": round(self.switch_rate, 4),
            "option_thrash_rate": round(self.thrash_rate, 4),
            "reward_mean": round(self.reward_mean, 6),
            "collapses": self.collapses,
        }

    @classmethod
    def of(cls, counts: np.ndarray, start: int = 0) -> WindowStats:
        """The record of a :data:`COUNTS` vector (as :meth:`KpiAccumulator.close` returns them)."""
        values: dict[str, Any] = {name: int(v) for name, v in zip(COUNTS, counts.tolist(), strict=True)}
        values["reward_sum"] = float(counts[REWARD_SUM])
        return cls(start=int(start), **values)

    def vector(self) -> np.ndarray:
        """The counts as a :data:`COUNTS` vector."""
        return np.array([getattr(self, name) for name in COUNTS], dtype=np.float64)


COUNTS = tuple(f.name for f in fields(WindowStats) if f.name != "start")  # a counts vector's columns
(
    TICKS,
    AGENT_TICKS,
    NEED_OK_TICKS,
    ARRIVALS,
    LATE,
    ABSENCES,
    COLLAPSES,
    EXITS,
    OPTION_STARTS,
    SWITCHES,
    THRASH,
    REWARD_SUM,
    PRESENT,
    SUFFICIENT,
    CHATS,
) = range(len(COUNTS))
_TERMS = {  # event kinds counted in a column of their own
    EventKind.OPTION_STARTED: OPTION_STARTS,
    EventKind.SHIFT_ARRIVED: ARRIVALS,
    EventKind.SHIFT_ABSENT: ABSENCES,
    EventKind.COLLAPSE: COLLAPSES,
    EventKind.AGENT_EXIT: EXITS,
    EventKind.CHAT: CHATS,
}

# Every kind :meth:`KpiTracker.update` folds: its :data:`COUNTED` name and its :data:`_TERMS` column (or None).
_FOLDS = {
    kind: (COUNTED.get(kind), _TERMS.get(kind))
    for kind in (
        *COUNTED,
        *_TERMS,
        EventKind.SHIFT_ARRIVED,
        EventKind.OPTION_STARTED,
        EventKind.OPTION_FINISHED,
        EventKind.OPTION_FAILED,
        EventKind.AGENT_EXIT,
        EventKind.AGENT_ARRIVED,
    )
}


class KpiAccumulator:
    """Open KPI windows of ``towns`` towns: counts added tick by tick (or step by step), closed into records.

    Besides the counts it follows, per slot, whether the same agent has been there since the window opened
    and its worst need so far: at the close, those still there are ``present`` and those whose needs all
    stayed below the ok threshold ``sufficient``. Agents whose episode ended inside the window (a training
    town reset at its horizon) are judged then (:meth:`end_episode`).

    Args:
        towns / capacity: Shape of the batch (1 for a single simulation).
        ok: ``needs.ok_threshold``.
        alive: ``bool[towns, capacity]`` who is there as the first window opens.
        start: The first window's first tick.

    Attributes:
        counts: ``float64[towns, len(COUNTS)]`` the open windows' counts.
        start: ``int64[towns]`` the open windows' first ticks.
        peak / whole: ``[towns, capacity]`` worst need so far, and "there since the window opened".
    """

    def __init__(self, towns: int, capacity: int, ok: float, alive: np.ndarray, start: int = 0) -> None:
        self.ok = np.float32(ok)
        self.counts = np.zeros((towns, len(COUNTS)))
        self.start = np.full(towns, start, dtype=np.int64)
        self.peak = np.zeros((towns, capacity), dtype=np.float32)
        self.whole = np.array(alive, dtype=np.bool_).reshape(towns, capacity)

    def add(self, counts: np.ndarray, worst: np.ndarray, alive: np.ndarray, arrived: np.ndarray) -> None:
        """Fold a tick or step: its counts (``[towns, COUNTS]``), each slot's worst need, who lives, who arrived."""
        self.counts += counts
        np.maximum(self.peak, worst, out=self.peak)
        self.whole &= alive
        self.whole &= ~arrived

    def end_episode(self, town: int) -> None:
        """Judge ``town``'s agents present since the window opened as its episode ends; its next agents are new."""
        whole = self.whole[town]
        self.counts[town, PRESENT] += whole.sum()
        self.counts[town, SUFFICIENT] += (whole & (self.peak[town] < self.ok)).sum()
        whole[:] = False
        self.peak[town] = 0.0

    def close(self, alive: np.ndarray, start: int | np.ndarray = 0) -> np.ndarray:
        """End the open windows (agents alive and there all along are judged); return their counts.

        Args:
            alive: ``bool[towns, capacity]`` who is there now (they start the next windows).
            start: The next windows' first tick.
        """
        alive = np.asarray(alive, dtype=np.bool_).reshape(self.whole.shape)
        whole = self.whole & alive
        out = self.counts.copy()
        out[:, PRESENT] += whole.sum(axis=1)
        out[:, SUFFICIENT] += (whole & (self.peak < self.ok)).sum(axis=1)
        self.counts[:] = 0.0
        self.peak[:] = 0.0
        self.whole[:] = alive
        self.start[:] = start
        return out


class KpiTracker:
    """Each tick's KPI terms (:attr:`last`, a :data:`COUNTS` vector) and the running totals for the report.

    Attributes:
        last: ``float64[len(COUNTS)]`` the counts of the tick just folded (present/sufficient stay 0: they
            are judged when a window closes).
        totals: The sum of every ``last`` since the town started (a training batch's ``kpi_totals``).
        agent_ticks / need_ok_ticks: Living agent-ticks since the town started, and those with every need ok.
        worst: ``float32[capacity]`` each living agent's worst need this tick (0 for empty slots).
        arrived: ``bool[capacity]`` slots whose agent arrived this tick.
        running / started: Whether each slot runs an option, and the tick it started (for switches and thrash).
    """

    def __init__(self, world: World) -> None:
        cfg = world.config
        cap = world.agents.capacity
        self.ok = np.float32(cfg.needs.ok_threshold)
        self.late_after = cfg.employment.punctuality_window
        self.young = cfg.stability.thrash_ticks
        self.last = np.zeros(len(COUNTS))
        self.totals = np.zeros(len(COUNTS))
        self.agent_ticks = 0  # the report's need health (kept beside ``totals``: snapshots before them hold these)
        self.need_ok_ticks = 0
        self.worst = np.zeros(cap, dtype=np.float32)
        self.arrived = np.zeros(cap, dtype=np.bool_)
        self._arrivals = False
        self.running = world.agents.option >= 0
        self.started = world.agents.option_started.copy()
        self.counts: Counter[str] = Counter()
        self.activities: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()
        self.perturbation_kinds: Counter[str] = Counter()
        self.reward_stats: Any = None  # the simulation attaches its reward stats (mean/std in the report)

    def update(self, world: World, events: list[Event], rewards: np.ndarray | None = None) -> None:
        """Fold one tick: its KPI terms into :attr:`last` and the totals (``rewards``: this tick's, per slot)."""
        a = world.agents
        t, totals = self.last, self.totals
        if rewards is None:
            rewards = np.zeros(0, dtype=np.float32)
        n, ok = _fold_agents(a.alive, a.needs, self.ok, rewards, self.worst, t, totals)  # resets ``last``
        self.agent_ticks += n
        self.need_ok_ticks += ok
        if self._arrivals:
            self.arrived[:] = False
            self._arrivals = False
        if events:
            self._fold_events(events, t, totals)

    def _fold_events(self, events: list[Event], t: np.ndarray, totals: np.ndarray) -> None:
        """Add the tick's events to the counters, ``t`` (this tick's vector) and ``totals``."""
        arrived, running, started = self.arrived, self.running, self.started
        for event in events:
            kind = event.kind
            fold = _FOLDS.get(kind)
            if fold is None:
                continue  # a kind no KPI counts
            name, column = fold
            if name is not None:
                self.counts[name] += 1
                if kind is EventKind.AFFORDANCE_COMPLETED:
                    self.activities[event.detail] += 1
                elif kind is EventKind.PERTURBATION_STARTED:
                    self.perturbation_kinds[event.detail.partition(":")[0]] += 1
            if column is not None:
                t[column] += 1.0
                totals[column] += 1.0
            if kind is EventKind.OPTION_STARTED:
                if running[event.agent]:
                    thrash = event.tick - int(started[event.agent]) < self.young
                    t[SWITCHES] += 1.0
                    t[THRASH] += thrash
                    totals[SWITCHES] += 1.0
                    totals[THRASH] += thrash
                running[event.agent] = True
                started[event.agent] = event.tick
            elif kind is EventKind.SHIFT_ARRIVED:
                late = event.value > self.late_after
                t[LATE] += late
                totals[LATE] += late
            elif kind is EventKind.OPTION_FINISHED or kind is EventKind.OPTION_FAILED:
                running[event.agent] = False
            elif kind is EventKind.AGENT_EXIT:
                running[event.agent] = False
                self.exits[event.detail] += 1
            elif kind is EventKind.AGENT_ARRIVED:
                running[event.agent] = False
                arrived[event.agent] = True
                self._arrivals = True

    def report(self, world: World) -> dict[str, Any]:
        """The KPI mapping (see docs/cli.md for every field)."""
        emp, a = world.employment, world.agents
        attended, absent, late = int(emp.attended.sum()), int(emp.absent.sum()), int(emp.late.sum())
        wallets = a.wallet[a.alive]
        return {
            "attendance": round(attendance(attended, absent), 4),
            "lateness": round(lateness(late, attended), 4),
            "shifts_attended": attended,
            "shifts_absent": absent,
            "collapses": self.counts["collapses"],
            "need_ok_share": round(need_ok_share(self.need_ok_ticks, self.agent_ticks), 4),
            "queue_conflicts": int(world.counters["queue_conflicts"]),
            "ghost_steps": int(world.counters["ghost_steps"]),
            "queue_joins": self.counts["queue_joins"],
            "chats": self.counts["chats"],
            "meals": int(world.hooks.stats["meals"]),
            "money": {
                "wages": round(world.economy.flows["wages"], 4),
                "rent": round(world.economy.flows["rent"], 4),
                "purchases": round(world.economy.flows["purchases"], 4),
                "fees": round(world.economy.flows["fees"], 4),
                "restock": round(world.economy.flows["restock"], 4),
                "wallet_mean": round(float(wallets.mean()), 4) if len(wallets) else 0.0,
                "wallet_min": round(float(wallets.min()), 4) if len(wallets) else 0.0,
                "wallet_max": round(float(wallets.max()), 4) if len(wallets) else 0.0,
            },
            "activities": dict(sorted(self.activities.items())),
            "options_failed": self.counts["options_failed"],
            "jobs_lost": self.counts["jobs_lost"],
            "rent_unpaid": self.counts["rent_unpaid"],
            "hook_errors": self.counts["hook_errors"],
            "exits": dict(sorted(self.exits.items())),
            "arrivals": self.counts["arrivals"],
            "perturbations": self.counts["perturbations"],
            "perturbation_kinds": dict(sorted(self.perturbation_kinds.items())),
            "narrations": self.counts["narrations"],
            "reward": {
                "mean": round(self.reward_stats.mean, 6) if self.reward_stats else 0.0,
                "std": round(self.reward_stats.std, 6) if self.reward_stats else 0.0,
            },
        }


class _View:
    """An array attribute that is another object's array: read it, or assign into it in place."""

    def __init__(self, find: Callable[[Any], np.ndarray], doc: str) -> None:
        self.find = find
        self.__doc__ = doc

    def __get__(self, obj: Any, owner: Any = None) -> np.ndarray:
        return self.find(obj)

    def __set__(self, obj: Any, value: np.ndarray) -> None:
        self.find(obj)[...] = value


class KpiMeter:
    """Windows of ``span`` ticks over one simulation (a :class:`KpiAccumulator` riding a timed phase after ``kpis``).

    Args:
        sim: The simulation to ride along (the phase is added at once).
        span: Span length in ticks (default: one in-sim day).
        on_span: Called with each closed span's :class:`WindowStats`.
        phase: The phase's name.

    Attributes:
        spans: Every closed span, oldest first.
        current: The open span's counts so far (a :class:`WindowStats`; ``present``/``sufficient`` at the close).
        spells: Lengths (ticks) of the job spells that ended.
    """

    def __init__(
        self,
        sim: Simulation,
        span: int | None = None,
        on_span: Callable[[WindowStats], None] | None = None,
        phase: str = "kpi_meter",
    ) -> None:
        world = sim.world
        self.sim = sim
        self.tracker = sim.kpis
        self.span = int(span or world.ticks_per_day)
        self.on_span = on_span
        a = world.agents
        self.windows = KpiAccumulator(1, a.capacity, world.config.needs.ok_threshold, a.alive, world.tick)
        emp = world.employment
        self.hired_at = np.zeros(a.capacity, dtype=np.int64)
        held = emp.holder >= 0
        self.hired_at[emp.holder[held]] = emp.hired_at[held]
        self.spells: list[int] = []
        self.spans: list[WindowStats] = []
        sim.add_phase(phase, lambda s: self.update(), after="kpis")

    # The option state lives with the tracker (it counts switches), the worst needs with the accumulator; the
    # meter keeps its saved fields (a live town's stability section) as views of them.
    running = _View(lambda meter: meter.tracker.running, "Whether each slot runs an option (the tracker's).")
    started = _View(lambda meter: meter.tracker.started, "The tick each slot's option started (the tracker's).")
    span_max = _View(lambda meter: meter.windows.peak[0], "Each slot's worst need in the open span.")

    @property
    def current(self) -> WindowStats:
        """The open span so far."""
        return WindowStats.of(self.windows.counts[0], int(self.windows.start[0]))

    @current.setter
    def current(self, stats: WindowStats) -> None:
        """Reopen the span from saved counts (a restored run); slots alive since its start count as whole."""
        a = self.sim.world.agents
        self.windows.counts[0] = stats.vector()
        self.windows.start[0] = stats.start
        self.windows.whole[0] = a.alive & (a.spawn_tick < stats.start)  # there since the span opened

    def update(self) -> None:
        """Fold the tick just simulated (called by the phase)."""
        t, w = self.tracker, self.sim.world
        self.windows.add(t.last, t.worst, w.agents.alive, t.arrived)
        for e in w.events:
            if e.kind is EventKind.JOB_HIRED:
                self.hired_at[e.agent] = e.tick
            elif e.kind is EventKind.JOB_LOST:
                self.spells.append(e.tick - int(self.hired_at[e.agent]))
        if self.windows.counts[0, TICKS] >= self.span:
            self.close()

    def close(self) -> WindowStats:
        """End the open span now (agents present all along are judged for self-sufficiency); return it."""
        w = self.sim.world
        start = int(self.windows.start[0])
        stats = WindowStats.of(self.windows.close(w.agents.alive, w.tick + 1)[0], start)
        self.spans.append(stats)
        if self.on_span is not None:
            self.on_span(stats)
        return stats

    def total(self) -> WindowStats:
        """All closed spans together."""
        out = WindowStats(start=self.spans[0].start if self.spans else 0)
        for span in self.spans:
            out = out.merge(span)
        return out

    def tenure_days(self) -> float:
        """Mean job tenure in days over the finished spells and those still running."""
        w = self.sim.world
        emp = w.employment
        held = emp.holder >= 0
        spells = self.spells + [int(w.tick - t) for t in emp.hired_at[held]]
        return float(np.mean(spells)) / w.ticks_per_day if spells else 0.0


@numba.njit(cache=True)
def _fold_agents(
    alive: np.ndarray,
    needs: np.ndarray,
    ok: np.float32,
    rewards: np.ndarray,
    worst: np.ndarray,
    counts: np.ndarray,
    totals: np.ndarray,
) -> tuple[int, int]:
    """Start a tick's ``counts`` with its agent terms (ticks, agent-ticks, need-ok ones, rewards), added to ``totals``.

    Writes each living agent's worst need into ``worst`` (0 for empty slots); returns the living agents and
    those among them with every need below ``ok``.
    """
    n = good = 0
    for s in range(len(alive)):
        if alive[s]:
            n += 1
            top = needs[s].max()
            worst[s] = top
            good += int(top < ok)
        else:
            worst[s] = 0.0
    reward = 0.0
    for s in range(len(rewards)):
        reward += rewards[s]
    counts[:] = 0.0
    counts[TICKS] = 1.0
    counts[AGENT_TICKS] = n
    counts[NEED_OK_TICKS] = good
    counts[REWARD_SUM] = reward
    for column in (TICKS, AGENT_TICKS, NEED_OK_TICKS, REWARD_SUM):
        totals[column] += counts[column]
    return n, good

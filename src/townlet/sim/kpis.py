"""KPIs: their definitions, the town's running totals, and the one accumulator of windowed views.

- :func:`attendance`, :func:`lateness`, :func:`need_ok_share`: the definitions every view uses (the run's
  totals, telemetry's stability windows, training windows, evaluation scorecards, the stability monitor).
- :class:`KpiTracker`: running totals since the town started (the ``kpis`` phase; ``run --json``).
- :class:`WindowStats` / :class:`KpiMeter`: counts over a span of ticks and the accumulator that folds a
  simulation's ticks into them (evaluation, stability, anneal; telemetry's windows count with
  :meth:`WindowStats.count`).
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


class KpiTracker:
    """Running totals for the KPI table and the ``--json`` contract."""

    def __init__(self, world: World) -> None:
        self.ok = np.float32(world.config.needs.ok_threshold)
        self.agent_ticks = 0
        self.need_ok_ticks = 0
        self.counts: Counter[str] = Counter()
        self.activities: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()
        self.perturbation_kinds: Counter[str] = Counter()
        self.reward_stats: Any = None  # the simulation attaches its reward stats (mean/std in the report)

    def update(self, world: World, events: list[Event]) -> None:
        """Fold one tick into the totals."""
        a = world.agents
        alive = a.alive
        n, ok = _need_ok(alive, a.needs, self.ok)
        self.agent_ticks += n
        self.need_ok_ticks += ok
        for event in events:
            name = COUNTED.get(event.kind)
            if name is not None:
                self.counts[name] += 1
                if event.kind is EventKind.AFFORDANCE_COMPLETED:
                    self.activities[event.detail] += 1
                elif event.kind is EventKind.PERTURBATION_STARTED:
                    self.perturbation_kinds[event.detail.partition(":")[0]] += 1
            elif event.kind is EventKind.AGENT_EXIT:
                self.exits[event.detail] += 1

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

    def count(self, e: Event, late_after: int) -> None:
        """Fold one event's counts (options started, arrivals and late ones, absences, collapses, exits, chats)."""
        kind = e.kind
        if kind is EventKind.OPTION_STARTED:
            self.option_starts += 1
        elif kind is EventKind.SHIFT_ARRIVED:
            self.arrivals += 1
            self.late += e.value > late_after
        elif kind is EventKind.SHIFT_ABSENT:
            self.absences += 1
        elif kind is EventKind.COLLAPSE:
            self.collapses += 1
        elif kind is EventKind.AGENT_EXIT:
            self.exits += 1
        elif kind is EventKind.CHAT:
            self.chats += 1

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


class KpiMeter:
    """Folds every tick of a simulation into spans of ``span`` ticks (a timed phase after ``kpis``).

    Args:
        sim: The simulation to ride along (the phase is added at once).
        span: Span length in ticks (default: one in-sim day).
        on_span: Called with each closed span's :class:`WindowStats`.

    Attributes:
        spans: Every closed span, oldest first.
        current: The open span.
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
        self.span = int(span or world.ticks_per_day)
        self.on_span = on_span
        self.ok = np.float32(world.config.needs.ok_threshold)
        self.late_after = world.config.employment.punctuality_window
        cap = world.agents.capacity
        self.running = world.agents.option >= 0
        self.started = world.agents.option_started.copy()
        self.young = world.config.stability.thrash_ticks
        self.span_max = np.zeros(cap, dtype=np.float32)
        emp = world.employment
        self.hired_at = np.zeros(cap, dtype=np.int64)
        held = emp.holder >= 0
        self.hired_at[emp.holder[held]] = emp.hired_at[held]
        self.spells: list[int] = []
        self.spans: list[WindowStats] = []
        self.current = WindowStats(start=world.tick)
        sim.add_phase(phase, lambda s: self.update(), after="kpis")

    def update(self) -> None:
        """Fold the tick just simulated (called by the phase)."""
        w = self.sim.world
        a = w.agents
        c = self.current
        alive = a.alive
        n = int(alive.sum())
        c.ticks += 1
        c.agent_ticks += n
        if n:
            worst = a.needs.max(axis=1)
            c.need_ok_ticks += int((worst[alive] < self.ok).sum())
            np.maximum(self.span_max, np.where(alive, worst, 0.0), out=self.span_max)
        c.reward_sum += float(self.sim.rewards.last.sum())
        running, started = self.running, self.started
        for e in w.events:
            c.count(e, self.late_after)
            kind = e.kind
            if kind is EventKind.OPTION_STARTED:
                if running[e.agent]:
                    c.switches += 1
                    c.thrash += e.tick - int(started[e.agent]) < self.young
                running[e.agent] = True
                started[e.agent] = e.tick
            elif kind is EventKind.OPTION_FINISHED or kind is EventKind.OPTION_FAILED:
                running[e.agent] = False
            elif kind is EventKind.AGENT_EXIT:
                running[e.agent] = False
            elif kind is EventKind.AGENT_ARRIVED:
                running[e.agent] = False
            elif kind is EventKind.JOB_HIRED:
                self.hired_at[e.agent] = e.tick
            elif kind is EventKind.JOB_LOST:
                self.spells.append(e.tick - int(self.hired_at[e.agent]))
        if c.ticks >= self.span:
            self.close()

    def close(self) -> WindowStats:
        """End the open span now (agents present all along are judged for self-sufficiency); return it."""
        w = self.sim.world
        a = w.agents
        c = self.current
        present = a.alive & (a.spawn_tick <= c.start)
        c.present = int(present.sum())
        c.sufficient = int((present & (self.span_max < self.ok)).sum())
        self.spans.append(c)
        self.current = WindowStats(start=w.tick + 1)
        self.span_max[:] = 0.0
        if self.on_span is not None:
            self.on_span(c)
        return c

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
def _need_ok(alive: np.ndarray, needs: np.ndarray, ok: np.float32) -> tuple[int, int]:
    """Living agents, and those among them with every need below ``ok``."""
    n = good = 0
    for s in range(len(alive)):
        if alive[s]:
            n += 1
            good += int(needs[s].max() < ok)
    return n, good

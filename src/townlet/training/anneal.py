"""The anneal: hand the agents over from the scripted routine to a learned policy, freezing on a KPI drop.

The share of agents left to the scripted routine starts at ``imitation.anneal.start`` (0.8: 80/20
scripted/learned) and steps down by ``step`` after every window whose KPIs hold, until ``end`` (0: all
learned) has held for a window (*completed*). When a window's KPI falls more than ``max_drop`` (30%) below
the scripted baseline's, the anneal *freezes*: the share goes back to the last one that held (or stays at
the start) and moves no more; the reason names the KPI.

:class:`AnnealSchedule` is the rule alone (PPO's collector reads ``scripted_share`` from it);
:class:`AnnealedActor` applies a share to a live :class:`~townlet.sim.simulation.Simulation`, and
:func:`run_anneal` runs the whole hand-over on fixed-seed towns against a scripted baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from townlet.config.loader import load_config
from townlet.config.models import AnnealConfig
from townlet.sim.kpis import KpiMeter, WindowStats
from townlet.training.evaluation import (
    Policy,
    build_sim,
    load_policy,
    policy_name,
    single_thread,
)

GOLDEN = 0.6180339887498949


@dataclass
class AnnealStep:
    """One judged window.

    Attributes:
        window: Its index (0 first).
        scripted_share: The share of agents the scripted routine drove in it.
        kpis: The window's KPIs.
        drops: Per watched KPI, its shortfall against the baseline as a share of the baseline.
        decision: ``advance``, ``complete``, or ``freeze``.
    """

    window: int
    scripted_share: float
    kpis: dict[str, float]
    drops: dict[str, float]
    decision: str


class AnnealSchedule:
    """The anneal's rule (see the module docstring).

    Args:
        cfg: ``imitation.anneal``.
        baseline: The scripted policy's KPIs (at least those in ``cfg.kpis``).

    Attributes:
        scripted_share: Share of agents for the scripted routine in the coming window.
        frozen / completed: How it ended (both False while it runs).
        reason: Why it froze.
        history: Every judged window.
    """

    def __init__(self, cfg: AnnealConfig, baseline: Mapping[str, float]) -> None:
        missing = [k for k in cfg.kpis if k not in baseline]
        if missing:
            raise ValueError(f"the baseline lacks {', '.join(missing)}")
        self.cfg = cfg
        self.baseline: dict[str, float] = {str(k): float(baseline[k]) for k in cfg.kpis}
        self.scripted_share = float(cfg.start)
        self.frozen = False
        self.completed = False
        self.reason = ""
        self.history: list[AnnealStep] = []
        self._held: float | None = None

    @property
    def learned_share(self) -> float:
        """Share of agents the learned policy drives."""
        return 1.0 - self.scripted_share

    @property
    def finished(self) -> bool:
        """Completed or frozen."""
        return self.frozen or self.completed

    def drops(self, kpis: Mapping[str, float]) -> dict[str, float]:
        """Shortfall of each watched KPI against the baseline, as a share of the baseline (negative: better)."""
        out: dict[str, float] = {}
        for k, base in self.baseline.items():
            out[k] = round((base - float(kpis[k])) / base, 4) if base > 0 else 0.0
        return out

    def observe(self, kpis: Mapping[str, float]) -> str:
        """Judge the window just run at :attr:`scripted_share`; returns the decision and moves the share."""
        drops = self.drops(kpis)
        share = self.scripted_share
        if self.finished:
            decision = "frozen" if self.frozen else "completed"
        else:
            worst = max(drops, key=lambda k: drops[k])
            if drops[worst] > self.cfg.max_drop:
                decision = "freeze"
                self.frozen = True
                self.reason = (
                    f"{worst} fell {drops[worst]:.0%} below scripted ({float(kpis[worst]):.4f} vs "
                    f"{self.baseline[worst]:.4f}) at {share:.0%} scripted"
                )
                self.scripted_share = self._held if self._held is not None else share
            elif share <= self.cfg.end + 1e-9:
                decision = "complete"
                self.completed = True
                self._held = share
            else:
                decision = "advance"
                self._held = share
                self.scripted_share = round(max(self.cfg.end, share - self.cfg.step), 9)
        self.history.append(
            AnnealStep(len(self.history), share, {k: float(v) for k, v in kpis.items()}, drops, decision)
        )
        return decision

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (:meth:`from_dict` restores it, e.g. on a resumed training run)."""
        return {
            "scripted_share": self.scripted_share,
            "frozen": self.frozen,
            "completed": self.completed,
            "reason": self.reason,
            "held": self._held,
            "baseline": self.baseline,
            "history": [asdict(h) for h in self.history],
        }

    @classmethod
    def from_dict(cls, cfg: AnnealConfig, state: Mapping[str, Any]) -> AnnealSchedule:
        """A schedule where :meth:`to_dict` left off."""
        schedule = cls(cfg, state["baseline"])
        schedule.scripted_share = float(state["scripted_share"])
        schedule.frozen, schedule.completed = bool(state["frozen"]), bool(state["completed"])
        schedule.reason = str(state.get("reason", ""))
        schedule._held = state.get("held")
        schedule.history = [AnnealStep(**h) for h in state.get("history", [])]
        return schedule


def scripted_slots(alive: np.ndarray, share: float) -> np.ndarray:
    """``bool[C]``: the living slots the scripted routine drives.

    ``round(share * living)`` of them, picked in a golden-ratio order over the slots so the choice is spread out
    and stays put as the share moves.
    """
    live = np.flatnonzero(alive)
    count = int(round(share * len(live)))
    out = np.zeros(len(alive), dtype=bool)
    if count:
        order = live[np.argsort((live * GOLDEN) % 1.0, kind="stable")]
        out[order[:count]] = True
    return out


class AnnealedActor:
    """A :attr:`Simulation.actor` that leaves a share of the agents to the scripted routine.

    Args:
        learned: The learned policy (anything with ``act(sim) -> int[capacity]``).
        scripted_share: Share of living agents left to the scripted routine.
    """

    def __init__(self, learned: Any, scripted_share: float) -> None:
        self.learned = learned
        self.scripted_share = float(scripted_share)

    @property
    def policy_hash(self) -> str:
        """The learned policy's hash."""
        return str(getattr(self.learned, "policy_hash", "learned"))

    def set_scripted_share(self, share: float) -> None:
        """Change the share from the next tick on."""
        self.scripted_share = float(share)

    def act(self, sim: Any) -> np.ndarray:
        """The learned policy's options, with -1 (the built-in routine) for the scripted share."""
        actions = self.learned.act(sim)
        actions[scripted_slots(sim.world.agents.alive, self.scripted_share)] = -1
        return actions


@dataclass
class AnnealResult:
    """How a run of the anneal ended.

    Attributes:
        outcome: ``completed`` (all agents learned and the KPIs held) or ``frozen`` (or ``unfinished``).
        scripted_share: The share it ended at.
        reason: Why it froze.
        baseline: The scripted KPIs it was judged against.
        history: Every judged window.
        policy: The learned policy's name.
    """

    outcome: str
    scripted_share: float
    reason: str
    baseline: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)
    policy: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return asdict(self)


def _window(sims: list[Any], meters: list[KpiMeter], ticks: int) -> WindowStats:
    for _ in range(ticks):
        for sim in sims:
            sim.step()
    out = WindowStats()
    for meter in meters:
        out = out.merge(meter.spans[-1])
    return out


def scripted_baseline(loaded: Any, seeds: list[int], window_ticks: int, windows: int) -> dict[str, float]:
    """Window KPIs of the scripted routine on the same towns, over as many windows as the anneal may need."""
    sims = [build_sim(loaded, s, "scripted") for s in seeds]
    meters = [KpiMeter(sim, span=window_ticks) for sim in sims]
    total = WindowStats()
    for _ in range(windows):
        total = total.merge(_window(sims, meters, window_ticks))
    return total.kpis()


def run_anneal(
    policy: Policy,
    config: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    seeds: Iterable[int] | None = None,
    baseline: Mapping[str, float] | None = None,
    greedy: bool | None = None,
    progress: Callable[[AnnealStep], None] | None = None,
) -> AnnealResult:
    """Run the anneal for a learned policy on fixed-seed towns (``evaluation.seeds`` by default).

    Every window all towns run ``imitation.anneal.window_ticks`` ticks with the current scripted share; their
    KPIs together are judged against ``baseline`` (the scripted routine on the same towns when None).
    """
    loaded = load_config(config, list(overrides))
    cfg = loaded.config.imitation.anneal
    seeds = list(loaded.config.evaluation.seeds if seeds is None else seeds)
    greedy = loaded.config.evaluation.greedy if greedy is None else greedy
    steps = int(round((cfg.start - cfg.end) / cfg.step)) + 1 if cfg.start > cfg.end else 1
    policy = load_policy(policy)
    if policy in ("scripted", "random"):
        raise ValueError("the anneal hands agents over to a learned policy: give a checkpoint")
    with single_thread():
        if baseline is None:
            baseline = scripted_baseline(loaded, seeds, cfg.window_ticks, steps)
        schedule = AnnealSchedule(cfg, baseline)
        sims, actors = [], []
        for seed in seeds:
            sim = build_sim(loaded, seed, policy, greedy)
            actor = AnnealedActor(sim.actor, schedule.scripted_share)
            sim.actor = actor
            sims.append(sim)
            actors.append(actor)
        meters = [KpiMeter(sim, span=cfg.window_ticks) for sim in sims]
        while not schedule.finished and len(schedule.history) < steps + 1:
            stats = _window(sims, meters, cfg.window_ticks)
            schedule.observe(stats.kpis())
            for actor in actors:
                actor.set_scripted_share(schedule.scripted_share)
            if progress is not None:
                progress(schedule.history[-1])
    outcome = "completed" if schedule.completed else "frozen" if schedule.frozen else "unfinished"
    return AnnealResult(
        outcome,
        schedule.scripted_share,
        schedule.reason,
        dict(schedule.baseline),
        [asdict(h) for h in schedule.history],
        policy_name(policy),
    )

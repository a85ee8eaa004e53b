"""The evaluation suite: fixed-seed scenarios per stage and the KPI scorecard (the A/B gate is in ``gate``).

A :class:`~townlet.sim.kpis.KpiMeter` rides along a simulation as a timed phase and folds each tick's counts
into window statistics (:class:`~townlet.sim.kpis.WindowStats`) with the one KPI accumulator
(:class:`~townlet.sim.kpis.KpiAccumulator`, under telemetry's and training's windows too); the stability
monitor and the anneal use the same meter with their own window length. The scorecard of a
run (:func:`scorecard`) has these keys:

| key | meaning | better |
|---|---|---|
| `attendance` | attended shifts / (attended + absent) | up |
| `lateness` | late arrivals / attended shifts | down |
| `collapses` | starvation incidents (hunger collapses), a count | down |
| `starvation` | collapses per agent-day | down |
| `need_ok_share` | share of agent-ticks with every need below `needs.ok_threshold` | up |
| `self_sufficiency` | share of agent-days (present all day) with every need below the ok threshold | up |
| `tenure` | mean job tenure in days (finished and ongoing spells) | up |
| `relationship_formation` | share of agents with a tie: familiarity >= `relationship_familiarity`, trust >= 0 | up |
| `conflict_escalation` | share of agents with an escalated rivalry (rivalry >= `evaluation.rival_level`) | down |
| `option_switch_rate` | share of option starts that abandoned a running option | down |
| `option_thrash_rate` | share of option starts that abandoned one younger than `stability.thrash_ticks` | down |
| `reward_mean` | mean reward per agent-tick | up |
| `exits`, `agent_days`, `ticks` | agents who left town; agent-days and ticks measured | |

:func:`evaluate` runs a policy (``scripted``, ``random``, a checkpoint) over ``evaluation.seeds`` for each
stage asked for and averages the scorecards (counts are summed); :mod:`townlet.training.gate` compares a
candidate with a baseline (a newer policy against the release, one observation variant against another).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from townlet.config.loader import LoadedConfig, load_config
from townlet.policy.learned import LearnedPolicy, torch_threads
from townlet.sim.kpis import KpiMeter
from townlet.sim.kpis import WindowStats as WindowStats  # re-exported: the meter's spans, by their old address
from townlet.sim.simulation import Simulation
from townlet.world.relationships import FAMILIARITY, RIVALRY, TRUST

Policy = Any  # "scripted" | "random" | Checkpoint | path | an actor with ``act(sim)`` | a callable installing one
COUNT_KEYS = ("collapses", "exits", "agent_days", "ticks")


def ties_share(sim: Simulation, component: int, level: float, trusting: bool = False) -> float:
    """Share of living agents with a tie whose ``component`` is at least ``level`` (``trusting``: and trust >= 0)."""
    a, rel = sim.world.agents, sim.world.relationships
    alive = a.alive
    if not alive.any():
        return 0.0
    tie = (rel.other >= 0) & (rel.values[:, :, component] >= level)
    if trusting:
        tie &= rel.values[:, :, TRUST] >= 0.0
    return float((tie.any(axis=1) & alive).sum() / alive.sum())


def scorecard(sim: Simulation, meter: KpiMeter) -> dict[str, Any]:
    """The KPI scorecard of a run so far (see the module docstring); closes the open span if it has ticks."""
    if meter.current.ticks:
        meter.close()
    total = meter.total()
    report = sim.kpis.report(sim.world)
    cfg = sim.config.evaluation
    agent_days = total.agent_ticks / sim.world.ticks_per_day
    return {
        "attendance": report["attendance"],
        "lateness": report["lateness"],
        "collapses": report["collapses"],
        "starvation": round(report["collapses"] / agent_days, 4) if agent_days else 0.0,
        "need_ok_share": report["need_ok_share"],
        "self_sufficiency": round(total.self_sufficiency, 4),
        "tenure": round(meter.tenure_days(), 4),
        "relationship_formation": round(ties_share(sim, FAMILIARITY, cfg.relationship_familiarity, True), 4),
        "conflict_escalation": round(ties_share(sim, RIVALRY, cfg.rival_level), 4),
        "option_switch_rate": round(total.switch_rate, 4),
        "option_thrash_rate": round(total.thrash_rate, 4),
        "reward_mean": round(total.reward_mean, 6),
        "exits": int(sum(report["exits"].values())),
        "agent_days": round(agent_days, 3),
        "ticks": total.ticks,
    }


# -- policies ---------------------------------------------------------------------------------------------


def single_thread(threads: int = 1) -> AbstractContextManager[None]:
    """Few torch threads while small networks act tick by tick (more only contend); restored after.

    Does nothing when torch is not loaded yet (no learned policy in play), so scripted runs never import it.
    """
    return torch_threads(threads)


def load_policy(policy: Policy) -> Policy:
    """Resolve a checkpoint path into a :class:`Checkpoint` once (other policies pass through)."""
    if isinstance(policy, str | Path) and str(policy) not in ("scripted", "random"):
        from townlet.policy.checkpoint import load

        return load(policy)
    return policy


def install(sim: Simulation, policy: Policy, greedy: bool = True) -> None:
    """Make ``policy`` drive every agent of ``sim`` from the next tick on (newcomers included)."""
    from townlet.policy.scripted import RandomPolicy, ScriptedPolicy

    policy = load_policy(policy)
    sim.actor = None
    if policy == "scripted":
        sim.policy = ScriptedPolicy(sim.world)
    elif policy == "random":
        sim.policy = RandomPolicy()
    else:
        sim.policy = ScriptedPolicy(sim.world)  # for the agents an actor leaves to the built-in policy
        if hasattr(policy, "act"):
            sim.actor = policy
        elif callable(policy):
            policy(sim)
        else:
            sim.actor = LearnedPolicy(policy, greedy=greedy, threads=sim.config.promotion.policy_threads)


def build_sim(loaded: LoadedConfig, seed: int, policy: Policy, greedy: bool = True) -> Simulation:
    """A simulation driven by ``policy`` (see :data:`Policy`)."""
    if isinstance(policy, str) and policy in ("scripted", "random"):
        return Simulation(loaded, seed=seed, policy=policy)
    sim = Simulation(loaded, seed=seed)
    install(sim, policy, greedy)
    return sim


def policy_name(policy: Policy) -> str:
    """A short name for reports: ``scripted``, ``random``, or the checkpoint's policy hash."""
    if isinstance(policy, str):
        return policy
    return str(getattr(policy, "policy_hash", None) or getattr(policy, "name", None) or type(policy).__name__)


def run_scorecard(loaded: LoadedConfig, policy: Policy, seed: int, ticks: int, greedy: bool = True) -> dict[str, Any]:
    """Run one fixed-seed scenario for ``ticks`` and return its scorecard (plus ``steps_per_s``)."""
    sim = build_sim(loaded, seed, policy, greedy)
    meter = KpiMeter(sim)
    started = time.perf_counter()
    for _ in range(ticks):
        sim.step()
    seconds = time.perf_counter() - started
    card = scorecard(sim, meter)
    card["steps_per_s"] = round(ticks / seconds, 1) if seconds > 0 else 0.0
    return card


# -- the suite --------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """A policy's results over the fixed-seed scenarios.

    Attributes:
        policy: Its name (``scripted``, ``random`` or a policy hash).
        scorecard: The averaged scorecard (counts summed).
        scenarios: One entry per scenario: ``stage``, ``seed``, ``social_rewards`` (the stage's
            ``features.social_rewards``, for the gate) and its ``scorecard``.
        days: In-sim days per scenario.
    """

    policy: str
    scorecard: dict[str, Any]
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    days: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return asdict(self)


def average(cards: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean of each KPI over scorecards (counts in ``COUNT_KEYS`` summed)."""
    if not cards:
        return {}
    out: dict[str, Any] = {}
    for key in cards[0]:
        values = [float(c[key]) for c in cards]
        out[key] = int(sum(values)) if key in COUNT_KEYS else round(float(np.mean(values)), 6)
    return out


def evaluate(
    policy: Policy,
    config: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    stages: Iterable[str | None] | None = (None,),
    seeds: Iterable[int] | None = None,
    days: float | None = None,
    greedy: bool | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    """Evaluate ``policy`` on fixed-seed scenarios.

    Args:
        policy: ``scripted``, ``random``, a :class:`Checkpoint` or its path, or an actor.
        config: YAML config (the shipped town when None).
        overrides: ``--set`` style overrides.
        stages: Stages to run (None in the list: the config as given; ``stages=None``: the suite's stages,
            ``evaluation.stages`` or every stage the config defines).
        seeds: Run seeds (``evaluation.seeds`` when None).
        days: In-sim days per scenario (``evaluation.days`` when None).
        greedy: Learned policies take their most likely option (``evaluation.greedy`` when None).
        progress: ``progress(label, done, total)`` after each scenario.
    """
    overrides = list(overrides)
    base = load_config(config, overrides)
    cfg = base.config.evaluation
    if stages is None:
        stages = cfg.stages or list(base.config.stages)
    stages = list(stages)
    seeds = list(cfg.seeds if seeds is None else seeds)
    days = cfg.days if days is None else days
    greedy = cfg.greedy if greedy is None else greedy
    policy = load_policy(policy)
    ticks = max(1, round(days * base.config.time.ticks_per_day))
    scenarios: list[dict[str, Any]] = []
    total = len(stages) * len(seeds)
    with single_thread():
        for stage in stages:
            loaded = base if stage is None else load_config(config, [*overrides, f"stage={stage}"])
            for seed in seeds:
                card = run_scorecard(loaded, policy, int(seed), ticks, greedy)
                scenarios.append(
                    {
                        "stage": stage or base.config.stage or "config",
                        "seed": int(seed),
                        "social_rewards": loaded.config.features.social_rewards,
                        "scorecard": card,
                    }
                )
                if progress is not None:
                    progress(f"{stage or 'config'} seed {seed}", len(scenarios), total)
    return Evaluation(policy_name(policy), average([s["scorecard"] for s in scenarios]), scenarios, days)

"""Helpers for the imitation, evaluation and release tests: tiny checkpoints and hand-written policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from townlet.config import load_config
from townlet.observations.layout import layout_of
from townlet.policy.options import OPTION_COUNT, Option
from townlet.policy.scripted import ScriptedPolicy
from townlet.sim import Simulation


def tiny_checkpoint(
    path: Path,
    variant: str = "hybrid",
    seed: int = 0,
    overrides: list[str] | None = None,
    lstm: bool = False,
    decisions: str = "points",
) -> Path:
    """Save an untrained policy (recurrent with ``lstm``; a semi-MDP one unless ``decisions="ticks"``)."""
    import torch

    from townlet.policy.checkpoint import from_network, save
    from townlet.policy.networks import NetworkSpec, OptionPolicyNet

    loaded = load_config(overrides=overrides or [])
    sim = Simulation(loaded)
    torch.manual_seed(seed)
    net = OptionPolicyNet(
        NetworkSpec.for_layout(layout_of(sim.world, variant), OPTION_COUNT, hidden=16, lstm=lstm, decisions=decisions)
    )
    return save(from_network(net, variant, loaded.config_id), path)


class LateRiser:
    """The scripted routine, except that it sets off for work only well after the shift has started."""

    def __init__(self, world, after_tick: int = 0) -> None:
        self.inner = ScriptedPolicy(world)
        self.after_tick = after_tick

    def choose(self, world, slot: int, mask: np.ndarray) -> int:
        """Delay GoToWork until three punctuality windows past the shift start (from ``after_tick`` on)."""
        choice = self.inner.choose(world, slot, mask)
        if choice == Option.GO_TO_WORK and world.tick >= self.after_tick:
            job, emp = int(world.agents.job[slot]), world.employment
            if world.tick % world.ticks_per_day < emp.start[job] + 3 * emp.cfg.punctuality_window:
                return int(Option.IDLE)
        return choice


def late_riser(after_tick: int = 0):
    """An in-process policy (for ``Promotion(policies=...)``) that installs a :class:`LateRiser`."""

    def install(sim: Simulation) -> None:
        sim.policy = LateRiser(sim.world, after_tick)

    return install


def steady(sim: Simulation) -> None:
    """An in-process policy that leaves the scripted routine in charge (a well-behaved candidate)."""


class Fixed:
    """An actor that gives every living agent the same option every tick."""

    def __init__(self, option: Option) -> None:
        self.option = int(option)

    def act(self, sim: Simulation) -> np.ndarray:
        """The option for every living slot, -1 elsewhere."""
        a = sim.world.agents
        return np.where(a.alive, self.option, -1).astype(np.int64)

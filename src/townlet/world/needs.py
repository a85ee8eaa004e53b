"""Needs decay: every living agent's deficits grow each tick, faster or slower by state and weather."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from townlet.config.models import NEED_NAMES
from townlet.world.events import EventKind

if TYPE_CHECKING:
    from townlet.world.state import World

HUNGER, HYGIENE, ENERGY, SOCIAL = range(len(NEED_NAMES))


class NeedRules:
    """Per-tick growth rates and the thresholds that raise events."""

    def __init__(self, world: World) -> None:
        cfg = world.config.needs
        self.rates = np.array([cfg.decay.get(n, 0.0) for n in NEED_NAMES], dtype=np.float32)
        if not world.config.features.relationships.startswith("C"):
            self.rates[SOCIAL] = 0.0  # the social need exists from stage C on
        self.asleep_rates = self.rates * np.array(
            [cfg.asleep_multiplier.get(n, 1.0) for n in NEED_NAMES], dtype=np.float32
        )
        self.cold_energy = np.float32(world.config.weather.cold_energy_multiplier)
        self.critical = np.float32(cfg.critical)
        self.collapse_level = np.float32(cfg.collapse_level)
        self.collapse_ticks = cfg.collapse_ticks

    def decay(self, world: World) -> None:
        """Grow every living agent's needs by one tick, clip to [0, 1], raise threshold events."""
        a = world.agents
        alive = a.alive
        before = a.needs[alive]
        growth = np.where(a.asleep[alive, None], self.asleep_rates, self.rates)
        if world.weather.is_cold:
            outdoors = world.grid.outdoors[a.tile[alive]]
            growth[outdoors, ENERGY] *= self.cold_energy
        after = np.clip(before + growth, 0.0, 1.0)
        a.needs[alive] = after
        crossed = (before < self.critical) & (after >= self.critical)
        if crossed.any():
            slots = np.flatnonzero(alive)
            for i, k in zip(*np.nonzero(crossed), strict=True):
                world.emit(EventKind.NEED_THRESHOLD, agent=int(slots[i]), value=float(after[i, k]), detail=NEED_NAMES[k])
                world.hook_event("need_threshold", int(slots[i]), detail=NEED_NAMES[k])
        self._collapse(world)

    def _collapse(self, world: World) -> None:
        a = world.agents
        starving = a.alive & (a.needs[:, HUNGER] >= self.collapse_level)
        a.collapse_ticks[starving] += 1
        a.collapse_ticks[~starving] = 0
        for slot in np.flatnonzero(a.collapse_ticks == self.collapse_ticks):
            world.emit(EventKind.COLLAPSE, agent=int(slot), value=float(a.needs[slot, HUNGER]), detail="hunger")
            world.hook_event("agent_near_death", int(slot), detail="collapse")

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
        self.collapse_ticks = max(cfg.collapse_ticks, 1)  # the count starts at 1 on the first tick at the level

    def decay(self, world: World) -> None:
        """Grow every living agent's needs by one tick, clip to [0, 1], raise threshold events."""
        a = world.agents
        growth = np.where(a.asleep[:, None], self.asleep_rates, self.rates)
        if world.weather.is_cold:
            growth[world.grid.outdoors[a.tile], ENERGY] *= self.cold_energy
        growth[~a.alive] = 0.0
        before = a.needs
        after = before + growth
        np.minimum(after, 1.0, out=after)
        crossed = (before < self.critical) & (after >= self.critical)
        before[...] = after  # in place: others may hold a view of the needs array
        if crossed.any():
            for slot, k in zip(*np.nonzero(crossed), strict=True):
                world.emit(EventKind.NEED_THRESHOLD, agent=int(slot), value=float(after[slot, k]), detail=NEED_NAMES[k])
                world.hook_event("need_threshold", int(slot), detail=NEED_NAMES[k])
        self._collapse(world)

    def _collapse(self, world: World) -> None:
        a = world.agents
        starving = a.alive & (a.needs[:, HUNGER] >= self.collapse_level)
        a.collapse_ticks[starving] += 1
        a.collapse_ticks[~starving] = 0
        for slot in (a.collapse_ticks == self.collapse_ticks).nonzero()[0]:
            world.emit(EventKind.COLLAPSE, agent=int(slot), value=float(a.needs[slot, HUNGER]), detail="hunger")
            world.hook_event("agent_near_death", int(slot), detail="collapse")

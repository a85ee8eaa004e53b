"""Needs decay: every living agent's deficits grow each tick, faster or slower by state and weather."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
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
        if not world.config.features.ties_rewarded:
            self.rates[SOCIAL] = 0.0  # the social need exists from stage C on (config.models.FeaturesConfig)
        self.asleep_rates = self.rates * np.array(
            [cfg.asleep_multiplier.get(n, 1.0) for n in NEED_NAMES], dtype=np.float32
        )
        self.cold_energy = np.float32(world.config.weather.cold_energy_multiplier)
        self.critical = np.float32(cfg.critical)
        self.collapse_level = np.float32(cfg.collapse_level)
        self.collapse_ticks = max(cfg.collapse_ticks, 1)  # the count starts at 1 on the first tick at the level

    def decay(self, world: World) -> None:
        """Grow every living agent's needs by one tick, clip to [0, 1], raise threshold and collapse events."""
        a = world.agents
        cold = self.cold_energy if world.weather.is_cold else np.float32(1.0)
        crossed, collapsed = _decay(
            a.needs,
            a.alive,
            a.asleep,
            a.tile,
            world.grid.outdoors,
            cold,
            self.rates,
            self.asleep_rates,
            self.critical,
            self.collapse_level,
            a.collapse_ticks,
            self.collapse_ticks,
        )
        for slot, k in crossed:
            world.emit(EventKind.NEED_THRESHOLD, agent=slot, value=float(a.needs[slot, k]), detail=NEED_NAMES[k])
            world.hook_event("need_threshold", slot, detail=NEED_NAMES[k])
        for slot in collapsed:
            world.emit(EventKind.COLLAPSE, agent=slot, value=float(a.needs[slot, HUNGER]), detail="hunger")
            world.hook_event("agent_near_death", slot, detail="collapse")


@numba.njit(cache=True)
def _decay(
    needs: np.ndarray,
    alive: np.ndarray,
    asleep: np.ndarray,
    tile: np.ndarray,
    outdoors: np.ndarray,
    cold: np.float32,
    rates: np.ndarray,
    asleep_rates: np.ndarray,
    critical: np.float32,
    collapse_level: np.float32,
    collapse_ticks: np.ndarray,
    collapse_after: int,
) -> tuple[list, list]:
    """One tick of growth for every living slot, in place; returns ``(slot, need)`` crossings and collapses.

    A need crosses when it reaches ``critical`` this tick; an agent collapses on its ``collapse_after``-th
    consecutive tick with hunger at ``collapse_level`` (the count is kept in ``collapse_ticks``).
    """
    crossed = [(0, 0) for _ in range(0)]
    collapsed = [0 for _ in range(0)]
    for s in range(len(alive)):
        if alive[s]:
            grow = asleep_rates if asleep[s] else rates
            for k in range(needs.shape[1]):
                g = grow[k]
                if k == ENERGY and outdoors[tile[s]]:
                    g = g * cold
                before = needs[s, k]
                after = min(before + g, np.float32(1.0))
                needs[s, k] = after
                if before < critical <= after:
                    crossed.append((s, k))
        if alive[s] and needs[s, HUNGER] >= collapse_level:
            collapse_ticks[s] += 1
            if collapse_ticks[s] == collapse_after:
                collapsed.append(s)
        else:
            collapse_ticks[s] = 0
    return crossed, collapsed

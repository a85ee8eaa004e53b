"""Needs decay: every living agent's deficits grow each tick, faster or slower by state and weather."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from townlet.config.models import NEED_NAMES
from townlet.world.events import EventKind
from townlet.world.weather import COLD

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
        self.pack()
        # per-tick scratch: ``(slot, need)`` crossings, then ``(slot, -1)`` collapses (at most one per slot)
        self._hits = np.empty(((len(NEED_NAMES) + 1) * world.agents.capacity, 2), dtype=np.int64)

    def pack(self) -> None:
        """Pack the settings the kernel reads into one array (again after a snapshot restores them)."""
        n = len(NEED_NAMES)
        self._consts = np.zeros(COLLAPSE_AFTER + 1)
        self._consts[:n] = self.rates
        self._consts[n : 2 * n] = self.asleep_rates
        self._consts[COLD_ENERGY:] = (self.cold_energy, self.critical, self.collapse_level, self.collapse_ticks)

    def decay(self, world: World) -> None:
        """Grow every living agent's needs by one tick, clip to [0, 1], raise threshold and collapse events."""
        a = world.agents
        hits = self._hits
        n = _decay(
            a.needs,
            a.alive,
            a.asleep,
            a.tile,
            world.grid.outdoors,
            world.weather.state,
            self._consts,
            a.collapse_ticks,
            hits,
        )
        if n:  # crossings first, then collapses (the kernel writes them in that order)
            for slot, k in hits[:n].tolist():
                if k >= 0:
                    value = float(a.needs[slot, k])
                    world.emit(EventKind.NEED_THRESHOLD, agent=slot, value=value, detail=NEED_NAMES[k])
                    world.hook_event("need_threshold", slot, detail=NEED_NAMES[k])
                else:
                    world.emit(EventKind.COLLAPSE, agent=slot, value=float(a.needs[slot, HUNGER]), detail="hunger")
                    world.hook_event("agent_near_death", slot, detail="collapse")


# Indices into :meth:`NeedRules.pack`'s array, after the growth rates awake and asleep (one per need each).
COLD_ENERGY, CRITICAL, COLLAPSE_LEVEL, COLLAPSE_AFTER = (2 * len(NEED_NAMES) + i for i in range(4))


@numba.njit(cache=True)
def _decay(
    needs: np.ndarray,
    alive: np.ndarray,
    asleep: np.ndarray,
    tile: np.ndarray,
    outdoors: np.ndarray,
    weather: int,
    consts: np.ndarray,
    collapse_ticks: np.ndarray,
    hits: np.ndarray,
) -> int:
    """One tick of growth for every living slot, in place; writes ``(slot, need)`` crossings, then collapses.

    ``consts`` is :meth:`NeedRules.pack`'s array. Energy grows ``COLD_ENERGY`` times faster outdoors while
    the ``weather`` state is ``COLD``. A need crosses when it reaches ``CRITICAL`` this tick; an agent
    collapses on its ``COLLAPSE_AFTER``-th consecutive tick with hunger at ``COLLAPSE_LEVEL`` (the count is
    kept in ``collapse_ticks``). The crossings go into ``hits`` first, then the collapses as ``(slot, -1)``;
    returns how many rows were written.
    """
    k_needs = needs.shape[1]
    cold_energy = np.float32(consts[COLD_ENERGY])
    critical = np.float32(consts[CRITICAL])
    collapse_level = np.float32(consts[COLLAPSE_LEVEL])
    collapse_after = int(consts[COLLAPSE_AFTER])
    cold = weather == COLD
    n = 0
    for s in range(len(alive)):
        if alive[s]:
            base = k_needs if asleep[s] else 0
            for k in range(k_needs):
                g = np.float32(consts[base + k])
                if cold and k == ENERGY and outdoors[tile[s]]:
                    g = g * cold_energy
                before = needs[s, k]
                after = min(before + g, np.float32(1.0))
                needs[s, k] = after
                if before < critical <= after:
                    hits[n, 0] = s
                    hits[n, 1] = k
                    n += 1
    for s in range(len(alive)):
        if alive[s] and needs[s, HUNGER] >= collapse_level:
            collapse_ticks[s] += 1
            if collapse_ticks[s] == collapse_after:
                hits[n, 0] = s
                hits[n, 1] = -1
                n += 1
        else:
            collapse_ticks[s] = 0
    return n

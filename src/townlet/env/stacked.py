"""``StackedObserver``: one compiled call writes the observations and option masks of all the towns a process steps.

Observing towns one by one pays each town's per-call costs every time: the Python reads that gather a
kernel's arguments, and the unboxing of about a hundred arrays. Here each town's argument tuples (its own
arrays, built once per episode) sit in numba typed lists, and one call loops over the towns through the
same kernels a single town uses (:func:`~townlet.observations.encoder.encode_blocks`,
:func:`~townlet.policy.options.town_masks`). Only the per-tick scalars (tick, weather, whether anybody queues,
prices...) are gathered in Python, so the results are those of each town observing on its own.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba.typed import List

from townlet.env.core import TownCore
from townlet.observations.encoder import encode_blocks
from townlet.policy.options import mask_scalars, town_masks

# Columns of the per-town scalar arrays.
FIRST, TICK, WEATHER, LINES, TOD = range(5)  # int64 columns
MEAL_PRICE, FOOD_PRICE, SHOWER_FEE = range(3)  # float64 columns


class StackedObserver:
    """Observes a fixed list of towns (option actions) in one compiled call per tick.

    Args:
        towns: The towns, all of one config (so their argument tuples have one numba type).
    """

    def __init__(self, towns: list[TownCore]) -> None:
        if any(town.primitives for town in towns):
            raise ValueError("StackedObserver serves option-level towns; primitive masks are computed in Python")
        self.towns = towns
        self.mapped = towns[0].encoder.map is not None
        n = len(towns)
        self.ints = np.zeros((n, 5), dtype=np.int64)
        self.floats = np.zeros((n, 3), dtype=np.float64)
        self._keys: list[tuple[Any, Any]] = [(None, None)] * n  # the argument tuples each list entry was built from
        self._lists: tuple[Any, ...] = ()

    def __call__(self) -> None:
        """Write every town's observations and masks (after each has stepped with ``observe=False``)."""
        ints, floats = self.ints, self.floats
        for i, town in enumerate(self.towns):
            first, tick, weather, lines = town.encoder.prepare()
            tod, meal_price, food_price, shower_fee = mask_scalars(town.sim.world)
            ints[i] = (first, tick, weather, lines, tod)
            floats[i] = (meal_price, food_price, shower_fee)
            self._track(i, town)
        if self.mapped:
            _observe_mapped(ints, floats, *self._lists)
        else:
            _observe_flat(ints, floats, *self._lists)

    def _track(self, i: int, town: TownCore) -> None:
        """Point entry ``i`` of the typed lists at the town's current argument tuples (new after a reset)."""
        encoding, masking = town.encoder.kernel_args(), town.mask_args()
        known = self._keys[i]
        if known[0] is encoding and known[1] is masking:
            return
        self._keys[i] = (encoding, masking)
        entries = tuple(e for e in (*encoding, masking) if e is not None)  # (no windows list without a map)
        if not self._lists:  # the first town fixes the lists' types; the others start as copies of it
            self._lists = tuple(_filled(entry, len(self.towns)) for entry in entries)
        for column, entry in zip(self._lists, entries, strict=True):
            _put(column, i, entry)


@numba.njit(cache=True)
def _observe_town(t, ints, floats, populations, agents, objects, commons, targets, window, masks):
    """Encode and mask town ``t`` (``window``: its map-window inputs, None for variants without a map)."""
    encode_blocks(
        ints[t, FIRST] != 0,
        ints[t, TICK],
        ints[t, WEATHER],
        ints[t, LINES] != 0,
        populations[t],
        agents[t],
        objects[t],
        commons[t],
        targets[t],
        window,
    )
    town_masks(
        ints[t, TICK], ints[t, TOD], floats[t, MEAL_PRICE], floats[t, FOOD_PRICE], floats[t, SHOWER_FEE], *masks[t]
    )


@numba.njit(cache=True)
def _observe_mapped(ints, floats, populations, agents, objects, commons, targets, windows, masks):
    """Encode and mask every town (variants with a map window); scalars per town in ``ints`` / ``floats``."""
    for t in range(len(populations)):
        _observe_town(t, ints, floats, populations, agents, objects, commons, targets, windows[t], masks)


@numba.njit(cache=True)
def _observe_flat(ints, floats, populations, agents, objects, commons, targets, masks):
    """Encode and mask every town (variants without a map window)."""
    for t in range(len(populations)):
        _observe_town(t, ints, floats, populations, agents, objects, commons, targets, None, masks)


# Typed lists are built and updated by compiled (and cached) functions: from Python each list method
# would be compiled again in every process, for every tuple type, at the first step (seconds).
@numba.njit(cache=True)
def _filled(entry, n):
    """A typed list of ``n`` times ``entry``."""
    out = List()
    for _ in range(n):
        out.append(entry)
    return out


@numba.njit(cache=True)
def _put(column, i, entry):
    """``column[i] = entry``."""
    column[i] = entry

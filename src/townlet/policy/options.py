"""Options (GetFed, GetClean, GoToWork, ShopGroceries, Sleep, Socialise, Idle) and the action mask.

The mask marks options that cannot possibly run for an agent right now (no food and no money to buy
any, no job or not near shift time, nobody to talk to); masked options are never chosen and never
punished.
"""

from __future__ import annotations

import weakref
from enum import IntEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from townlet.config.models import clock_to_tick

if TYPE_CHECKING:
    from townlet.world.state import World


class Option(IntEnum):
    """The option action space (order is the Discrete action index)."""

    GET_FED = 0
    GET_CLEAN = 1
    GO_TO_WORK = 2
    SHOP_GROCERIES = 3
    SLEEP = 4
    SOCIALISE = 5
    IDLE = 6


OPTION_COUNT = len(Option)
OPTION_LABELS = ("GetFed", "GetClean", "GoToWork", "ShopGroceries", "Sleep", "Socialise", "Idle")


@lru_cache(maxsize=16)
def _night_hours(bedtime: str, wake: str, ticks_per_day: int) -> tuple[int, int]:
    return clock_to_tick(bedtime, ticks_per_day), clock_to_tick(wake, ticks_per_day)


def is_night(world: World, tod: int) -> bool:
    """Whether a tick of the day lies between ``options.bedtime`` and ``options.wake_time``."""
    cfg = world.config.options
    bed, wake = _night_hours(cfg.bedtime, cfg.wake_time, world.ticks_per_day)
    return tod >= bed or tod < wake


_SHOWER_FEES: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _shower_fee(manifest: Any) -> float:
    """The cheapest shower's fee in a manifest (looked up once per manifest object)."""
    fee = _SHOWER_FEES.get(manifest)
    if fee is None:
        fee = min((aff.pay for aff in manifest.affordances if aff.object_type == "shower"), default=0.0)
        _SHOWER_FEES[manifest] = fee
    return fee


def option_mask(world: World, slots: np.ndarray | None = None) -> np.ndarray:
    """``bool[n, 7]`` which options each agent (living slots by default) could start now."""
    a, e, emp = world.agents, world.economy, world.employment
    if slots is None:
        slots = a.slots()
    items = a.item_index
    places = world.objects.places_of_kind
    open_places = world.place_open  # closed facilities sell nothing
    cafe_stock = sum(e.stock_at(p, "cafe_meal") for p in places.get("cafe", ()) if open_places[p])
    grocer_stock = sum(e.stock_at(p, "raw_food") for p in places.get("grocer", ()) if open_places[p])
    return _option_mask(
        slots, a.wallet, a.inventory, a.job, emp.start, emp.end, emp.cfg.early_arrival,
        world.tick % world.ticks_per_day, items.get("raw_food", -1), items.get("cafe_meal", -1),
        items.get("clean_clothes", -1),
        float(e.prices.get("cafe_meal", np.inf)) if cafe_stock > 0 else np.inf,
        float(e.prices.get("raw_food", np.inf)) if grocer_stock > 0 else np.inf,
        _shower_fee(world.manifest) if np.count_nonzero(world.utilities.water_on) else np.inf,
        bool(world.relationships.enabled and np.count_nonzero(a.alive) > 1),
    )


@numba.njit(cache=True)
def _option_mask(slots: np.ndarray, wallet: np.ndarray, inventory: np.ndarray, job: np.ndarray,
                 start: np.ndarray, end: np.ndarray, early: int, tod: int, raw: int, meal: int, clothes: int,
                 meal_price: float, food_price: float, shower_fee: float, social: bool) -> np.ndarray:
    """The mask from per-agent arrays and the town's scalars (a price of ``inf``: nothing to buy)."""
    mask = np.ones((len(slots), OPTION_COUNT), dtype=np.bool_)
    for i in range(len(slots)):
        s = slots[i]
        money = wallet[s]
        has_food = (raw >= 0 and inventory[s, raw] >= 1) or (meal >= 0 and inventory[s, meal] >= 1)
        mask[i, 0] = has_food or money >= meal_price  # GetFed
        mask[i, 1] = money >= shower_fee or (clothes >= 0 and inventory[s, clothes] >= 1)  # GetClean
        j = job[s]
        mask[i, 2] = j >= 0 and start[j] - early <= tod < end[j] - 1  # GoToWork
        mask[i, 3] = money >= food_price  # ShopGroceries
        mask[i, 5] = social  # Socialise
    return mask

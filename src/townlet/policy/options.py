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


def work_window(world: World, slots: np.ndarray) -> np.ndarray:
    """Whether each agent's job is open for arrival now (early arrival up to shift end)."""
    jobs = world.agents.job.take(slots)
    emp = world.employment
    if not len(emp):
        return np.zeros(len(slots), dtype=bool)
    tod = world.tick % world.ticks_per_day
    # jobs == -1 reads the last position; masked by ``jobs >= 0``.
    return (jobs >= 0) & (emp.start.take(jobs) - emp.cfg.early_arrival <= tod) & (tod < emp.end.take(jobs) - 1)


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
    a, e = world.agents, world.economy
    if slots is None:
        slots = a.slots()
    n = len(slots)
    mask = np.ones((n, OPTION_COUNT), dtype=bool)
    if not n:
        return mask
    wallet = a.wallet.take(slots)
    inv = a.inventory.take(slots, axis=0)
    raw = a.item_index.get("raw_food")
    meal = a.item_index.get("cafe_meal")
    has_food = inv[:, raw] >= 1 if raw is not None else np.zeros(n, bool)
    if meal is not None:
        has_food |= inv[:, meal] >= 1
    open_places = world.place_open  # closed facilities sell nothing
    cafe_stock = sum(
        e.stock_at(p, "cafe_meal") for p in world.objects.places_of_kind.get("cafe", []) if open_places[p]
    )
    can_buy_meal = (wallet >= e.prices.get("cafe_meal", np.inf)) & (cafe_stock > 0)
    mask[:, Option.GET_FED] = has_food | can_buy_meal
    clothes = a.item_index.get("clean_clothes")
    shower_fee = _shower_fee(world.manifest)
    water_anywhere = bool(world.utilities.water_on.any())
    has_clothes = inv[:, clothes] >= 1 if clothes is not None else np.zeros(n, bool)
    mask[:, Option.GET_CLEAN] = (water_anywhere & (wallet >= shower_fee)) | has_clothes
    mask[:, Option.GO_TO_WORK] = work_window(world, slots)
    grocer_stock = sum(
        e.stock_at(p, "raw_food") for p in world.objects.places_of_kind.get("grocer", []) if open_places[p]
    )
    mask[:, Option.SHOP_GROCERIES] = (wallet >= e.prices.get("raw_food", np.inf)) & (grocer_stock > 0)
    social = world.relationships.enabled and int(a.alive.sum()) > 1
    mask[:, Option.SOCIALISE] = social
    return mask

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


def mask_scalars(world: World) -> tuple[int, float, float, float]:
    """The town's inputs to the mask now: ``(time of day, meal price, food price, shower fee)``.

    A price of ``inf`` means nothing to buy (no open place of the kind has it in stock).
    """
    return (world.tick % world.ticks_per_day, _price_if_sold(world, "cafe", "cafe_meal"),
            _price_if_sold(world, "grocer", "raw_food"), _shower_fee(world.manifest))


def _price_if_sold(world: World, kind: str, item: str) -> float:
    """The item's price if the open places of ``kind`` (closed facilities sell nothing) have any in stock, else inf."""
    stock, open_places = world.economy.stock, world.place_open
    units = 0
    for place in world.objects.places_of_kind.get(kind, ()):
        if open_places[place]:
            units += stock.get(place, {}).get(item, 0)
    return float(world.economy.prices.get(item, np.inf)) if units > 0 else np.inf


def mask_arrays(world: World) -> tuple[Any, ...]:
    """What the mask kernels read after :func:`mask_scalars`: town arrays and flags, then per-agent arrays."""
    a, emp = world.agents, world.employment
    items = a.item_index
    return (world.utilities.water_on, world.relationships.enabled, a.alive, a.wallet, a.inventory, a.job, emp.start,
            emp.end, emp.cfg.early_arrival, items.get("raw_food", -1), items.get("cafe_meal", -1),
            items.get("clean_clothes", -1))


def option_mask(world: World, slots: np.ndarray | None = None) -> np.ndarray:
    """``bool[n, 7]`` which options each agent (living slots by default) could start now."""
    if slots is None:
        slots = world.agents.slots()
    return _option_mask(slots, *mask_scalars(world), *mask_arrays(world))


@numba.njit(cache=True)
def town_terms(shower_fee: float, water_on: np.ndarray, social_on: bool, alive: np.ndarray) -> tuple[float, bool]:
    """The shower fee (inf while no place has water) and whether anybody could socialise (two or more agents)."""
    fee = np.inf
    for on in water_on:
        if on:
            fee = shower_fee
            break
    living = 0
    for here in alive:
        living += here
    return fee, social_on and living > 1


@numba.njit(cache=True)
def mask_row(row: np.ndarray, s: int, tod: int, meal_price: float, food_price: float, shower_fee: float, social: bool,
             wallet: np.ndarray, inventory: np.ndarray, job: np.ndarray, start: np.ndarray, end: np.ndarray,
             early: int, raw: int, meal: int, clothes: int) -> None:
    """Write slot ``s``'s mask into ``row`` (of any integer or bool dtype)."""
    money = wallet[s]
    has_food = (raw >= 0 and inventory[s, raw] >= 1) or (meal >= 0 and inventory[s, meal] >= 1)
    row[0] = has_food or money >= meal_price  # GetFed
    row[1] = money >= shower_fee or (clothes >= 0 and inventory[s, clothes] >= 1)  # GetClean
    j = job[s]
    row[2] = j >= 0 and start[j] - early <= tod < end[j] - 1  # GoToWork
    row[3] = money >= food_price  # ShopGroceries
    row[4] = True  # Sleep
    row[5] = social  # Socialise
    row[6] = True  # Idle


@numba.njit(cache=True)
def _option_mask(slots, tod, meal_price, food_price, shower_fee, water_on, social_on, alive, wallet, inventory, job,
                 start, end, early, raw, meal, clothes):
    """The mask rows of ``slots`` (the arguments after them: :func:`mask_scalars`, then :func:`mask_arrays`)."""
    fee, social = town_terms(shower_fee, water_on, social_on, alive)
    mask = np.empty((len(slots), OPTION_COUNT), dtype=np.bool_)
    for i in range(len(slots)):
        mask_row(mask[i], slots[i], tod, meal_price, food_price, fee, social, wallet, inventory, job, start, end,
                 early, raw, meal, clothes)
    return mask

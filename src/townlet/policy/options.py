"""Options (GetFed, GetClean, GoToWork, ShopGroceries, Sleep, Socialise, Idle), the one option mask, decision points.

There is one mask, computed by one compiled rule (:func:`mask_slots`) wherever a mask is needed: the
simulation (checking external choices, asking the built-in policy), the RL env, capture for behaviour
cloning, the trainer and :class:`~townlet.policy.learned.LearnedPolicy`. A row says which options an agent
may choose now:

- *possible* options: not those that cannot run (no food and no money to buy any, no
  job or not near shift time, nobody to talk to); masked options are never chosen and never punished;
- but only when the agent is *free to choose*; otherwise the row holds just the running option
  (choosing it continues it). Who is free depends on the ``commitment`` argument:

  - ``commitment >= 0`` (tick by tick): an agent with no option, one whose option has run ``commitment``
    ticks (the commitment window; 0: everybody), or one whose need turned critical after its option started;
  - ``commitment = DECISION_POINTS`` (semi-MDP): only an agent at a *decision point* (:func:`must_decide`):
    its option finished or failed (or it just arrived: it has none), or, while its option runs, a need turned
    critical or rose past ``options.decision_level`` this tick, or, while a need stays critical, an option
    became possible that was not (wages paid for the meal it could not afford; ``point_at``).

Every living agent may continue its running option. Critical streaks (``critical_since``, the first tick of
each agent's current streak with a need at or above ``needs.critical``) and need points (``point_at``, the
last tick a need turned critical or rose past the decision level) are kept by the option controller between
ticks (:meth:`~townlet.policy.controller.OptionController.settle`).
"""

from __future__ import annotations

import weakref
from enum import IntEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import numba
import numpy as np

from townlet.config.models import clock_to_tick
from townlet.config.vocabulary import OPTIONS
from townlet.observations.commitment import window_over

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
OPTION_LABELS = OPTIONS  # the vocabulary's option names, in Option order


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
    return (
        world.tick % world.ticks_per_day,
        _price_if_sold(world, "cafe", "cafe_meal"),
        _price_if_sold(world, "grocer", "raw_food"),
        _shower_fee(world.manifest),
    )


def _price_if_sold(world: World, kind: str, item: str) -> float:
    """The item's price if the open places of ``kind`` (closed facilities sell nothing) have any in stock, else inf."""
    stock, open_places = world.economy.stock, world.place_open
    units = 0
    for place in world.objects.places_of_kind.get(kind, ()):
        if open_places[place]:
            units += stock.get(place, {}).get(item, 0)
    return float(world.economy.prices.get(item, np.inf)) if units > 0 else np.inf


class MaskArrays(NamedTuple):
    """What the mask reads of a town besides the per-tick prices: the world's own arrays (no copies)."""

    water_on: np.ndarray  # bool[places] whose water runs (a shower needs it)
    social_on: bool  # relationships enabled
    alive: np.ndarray  # bool[C]
    wallet: np.ndarray  # float64[C]
    inventory: np.ndarray  # int32[C, items]
    job: np.ndarray  # int32[C] job position, -1 none
    start: np.ndarray  # int64[jobs] shift start (tick of the day)
    end: np.ndarray  # int64[jobs] shift end
    early: int  # ticks before a shift an agent may set off to work
    raw: int  # item column of raw food (-1: none)
    meal: int  # ... of a cafe meal
    clothes: int  # ... of clean clothes


class Choice(NamedTuple):
    """Who is free to choose (see the module docstring): the streaks, need points and running options."""

    critical_since: np.ndarray  # int64[C] first tick of each agent's critical streak (NEVER: none)
    point_at: np.ndarray  # int64[C] last need point (NEVER: none)
    option: np.ndarray  # int8[C] running option (-1: none)
    started: np.ndarray  # int64[C] the tick it started
    commitment: int  # the commitment window, or DECISION_POINTS


def mask_arrays(world: World) -> MaskArrays:
    """What the mask kernels read after :func:`mask_scalars` (the town's own arrays, so cheap to build)."""
    a, emp = world.agents, world.employment
    items = a.item_index
    return MaskArrays(
        water_on=world.utilities.water_on,
        social_on=world.relationships.enabled,
        alive=a.alive,
        wallet=a.wallet,
        inventory=a.inventory,
        job=a.job,
        start=emp.start,
        end=emp.end,
        early=emp.cfg.early_arrival,
        raw=items.get("raw_food", -1),
        meal=items.get("cafe_meal", -1),
        clothes=items.get("clean_clothes", -1),
    )


NEVER = np.iinfo(np.int64).max  # ``critical_since`` / ``point_at`` of an agent with no streak / no point
DECISION_POINTS = -1  # ``commitment`` of the semi-MDP mask: choices only at decision points


def choice_of(
    world: World, commitment: int, critical_since: np.ndarray | None = None, point_at: np.ndarray | None = None
) -> Choice:
    """Who is free to choose in ``world`` under ``commitment``; no streaks / need points when None (nobody's)."""
    a = world.agents
    if critical_since is None or point_at is None:
        never = np.full(a.capacity, NEVER, dtype=np.int64)
        critical_since = never if critical_since is None else critical_since
        point_at = never if point_at is None else point_at
    return Choice(
        critical_since=critical_since,
        point_at=point_at,
        option=a.option,
        started=a.option_started,
        commitment=commitment,
    )


def option_mask(
    world: World,
    slots: np.ndarray | None = None,
    commitment: int = 0,
    critical_since: np.ndarray | None = None,
    point_at: np.ndarray | None = None,
) -> np.ndarray:
    """``bool[n, 7]`` the option mask of ``slots`` (living slots by default) for the coming tick.

    Args:
        world: The town, between ticks.
        slots: Slots to mask (each row: see the module docstring).
        commitment: The commitment window in ticks (0: every agent is free to choose, so a row is every
            possible option plus the running one), or ``DECISION_POINTS``.
        critical_since: ``int64[C]`` critical streaks (the controller's); None: nobody's need is critical.
        point_at: ``int64[C]`` need points (the controller's); None: none.
    """
    if slots is None:
        slots = world.agents.slots()
    choice = choice_of(world, commitment, critical_since, point_at)
    slots = np.asarray(slots, dtype=np.int64)
    return _slot_masks(slots, world.tick, *mask_scalars(world), tuple(choice), tuple(mask_arrays(world)))


@numba.njit(cache=True)
def decision_point(s: int, option: np.ndarray, started: np.ndarray, point_at: np.ndarray, tick: int) -> bool:
    """Whether living slot ``s`` is at a decision point before ``tick``: no option, or a need point under one."""
    return option[s] < 0 or (point_at[s] == tick and started[s] < tick)


@numba.njit(cache=True)
def must_decide(
    alive: np.ndarray, option: np.ndarray, started: np.ndarray, point_at: np.ndarray, tick: int
) -> np.ndarray:
    """``bool[C]`` agents at a decision point before ``tick`` (:func:`decision_point`)."""
    out = np.zeros(len(alive), dtype=np.bool_)
    for s in range(len(alive)):
        if alive[s]:
            out[s] = decision_point(s, option, started, point_at, tick)
    return out


@numba.njit(cache=True)
def need_points(
    alive: np.ndarray,
    needs: np.ndarray,
    critical: np.float32,
    critical_since: np.ndarray,
    level: np.float32,
    above: np.ndarray,
    point_at: np.ndarray,
    tick: int,
    points: bool,
) -> None:
    """Update the critical streaks and (with ``points``) the need points for ``tick`` (``int64[C]``, ``NEVER``: none).

    ``critical_since`` is the first tick of each agent's current streak with a need at or above ``critical``;
    ``point_at`` becomes ``tick`` when such a streak starts or a need rises to ``level`` (``above``:
    ``bool[C, needs]`` which needs were at or above it, so that only a rise counts).
    """
    for s in range(len(alive)):
        if not alive[s]:
            critical_since[s] = NEVER
            point_at[s] = NEVER
            above[s, :] = False
            continue
        worst = needs[s, 0]
        for k in range(needs.shape[1]):
            x = needs[s, k]
            worst = max(worst, x)
            if points:
                high = x >= level
                if high and not above[s, k]:
                    point_at[s] = tick
                above[s, k] = high
        if worst < critical:
            critical_since[s] = NEVER
        elif critical_since[s] == NEVER:
            critical_since[s] = tick
            if points:
                point_at[s] = tick


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
def mask_slots(
    mask: np.ndarray,
    slots: np.ndarray,
    living_only: bool,
    tick: int,
    tod: int,
    meal_price: float,
    food_price: float,
    fee: float,
    social: bool,
    choice: Choice,
    town: MaskArrays,
) -> None:
    """Write the mask of ``slots[i]`` into row ``i`` of ``mask``: the one option mask (see the module docstring).

    ``living_only``: rows of empty slots stay zero. A row's first part is who is free to choose, its second
    the *possible* options. The whole rule is one loop with the arrays read once: a helper called per slot
    with the bundles costs more (reference counting of every array it is handed) than the rule itself.
    """
    option, started, since, point_at = choice.option, choice.started, choice.critical_since, choice.point_at
    commitment = choice.commitment
    alive, wallet, inv, job, start, end = town.alive, town.wallet, town.inventory, town.job, town.start, town.end
    raw, meal, clothes, early = town.raw, town.meal, town.clothes, town.early
    for i in range(len(slots)):
        s = slots[i]
        for k in range(mask.shape[1]):
            mask[i, k] = 0
        if living_only and not alive[s]:
            continue
        running = option[s] >= 0
        if commitment == DECISION_POINTS:
            free = decision_point(s, option, started, point_at, tick)
        elif not running:
            free = True
        else:
            free = window_over(tick, started[s], commitment) or (since[s] != NEVER and started[s] < since[s])
        if free:  # the possible options
            money = wallet[s]
            has_food = (raw >= 0 and inv[s, raw] >= 1) or (meal >= 0 and inv[s, meal] >= 1)
            mask[i, 0] = has_food or money >= meal_price  # GetFed
            mask[i, 1] = money >= fee or (clothes >= 0 and inv[s, clothes] >= 1)  # GetClean
            j = job[s]
            mask[i, 2] = j >= 0 and start[j] - early <= tod < end[j] - 1  # GoToWork
            mask[i, 3] = money >= food_price  # ShopGroceries
            mask[i, 4] = True  # Sleep
            mask[i, 5] = social  # Socialise
            mask[i, 6] = True  # Idle
        if running:
            mask[i, option[s]] = 1


@numba.njit(cache=True)
def town_masks(
    tick: int,
    tod: int,
    meal_price: float,
    food_price: float,
    shower_fee: float,
    mask: np.ndarray,
    choice_fields: tuple,
    town_fields: tuple,
) -> None:
    """Every slot's mask row into ``mask`` (``[C, A]`` of any integer or bool dtype): zeros for empty slots.

    ``tod`` to ``shower_fee`` come from :func:`mask_scalars`, ``town`` from :func:`mask_arrays`.

    ``choice_fields`` and ``town_fields`` are a :class:`Choice` and a :class:`MaskArrays` as plain tuples
    (``tuple(bundle)``): a plain tuple crosses from Python into compiled code faster than a named one.
    """
    choice, town = Choice(*choice_fields), MaskArrays(*town_fields)  # named again (declared field order)
    fee, social = town_terms(shower_fee, town.water_on, town.social_on, town.alive)
    mask_slots(mask, np.arange(len(town.alive)), True, tick, tod, meal_price, food_price, fee, social, choice, town)


@numba.njit(cache=True)
def _slot_masks(
    slots: np.ndarray,
    tick: int,
    tod: int,
    meal_price: float,
    food_price: float,
    shower_fee: float,
    choice_fields: tuple,
    town_fields: tuple,
) -> np.ndarray:
    """The mask rows of ``slots`` (the same rule as :func:`town_masks`).

    ``choice_fields`` and ``town_fields`` are a :class:`Choice` and a :class:`MaskArrays` as plain tuples
    (``tuple(bundle)``): a plain tuple crosses from Python into compiled code faster than a named one.
    """
    choice, town = Choice(*choice_fields), MaskArrays(*town_fields)  # named again (declared field order)
    fee, social = town_terms(shower_fee, town.water_on, town.social_on, town.alive)
    mask = np.zeros((len(slots), OPTION_COUNT), dtype=np.bool_)
    mask_slots(mask, slots, False, tick, tod, meal_price, food_price, fee, social, choice, town)
    return mask

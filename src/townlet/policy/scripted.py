"""Policies that choose options: the scripted daily routine and a uniform random (masked) baseline.

A policy answers one question for one agent: which option next? The scripted routine is a readable
priority list over needs, the clock and the job; it is the behaviour-cloning teacher for learned
policies and the baseline every KPI is compared against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from townlet.policy.options import OPTION_COUNT, Option, is_night
from townlet.world.needs import ENERGY, HUNGER, HYGIENE, SOCIAL

if TYPE_CHECKING:
    from townlet.world.state import World


class OptionPolicy(Protocol):
    """Anything that picks an option for an agent given its mask row."""

    def choose(self, world: World, slot: int, mask: np.ndarray) -> int:
        """Return an option index allowed by ``mask``."""
        ...


class ScriptedPolicy:
    """The hand-written daily routine: sleep at night, work on shift, eat, wash, shop, socialise."""

    def __init__(self, world: World) -> None:
        cfg = world.config.options
        tpd = world.ticks_per_day
        self.cfg = cfg
        self.tpd = tpd

    def _leave_in(self, world: World, slot: int, tod: int) -> int | None:
        """Ticks until the agent must set off for its shift (<= 0: go now); None when no work is due."""
        job = int(world.agents.job[slot])
        if job < 0:
            return None
        emp = world.employment
        start, end = int(emp.start[job]), int(emp.end[job])
        if tod >= end - 1:
            return None
        station = int(emp.station[job])
        field = world.objects.field_of(station)
        travel = world.grid.dist_at(field, int(world.agents.tile[slot]))
        if world.weather.is_raining:
            travel = int(travel * world.weather.rain_cost)
        if emp.arrived_day[job] == world.tick // self.tpd and tod >= start:
            return 0 if tod + travel < end - self.cfg.commute_margin else None  # back to the desk after a break
        leave_in = start - travel - self.cfg.commute_margin - tod
        return leave_in if leave_in <= self.cfg.prepare_window else None

    def choose(self, world: World, slot: int, mask: np.ndarray) -> int:  # noqa: C901
        """Pick the most pressing allowed option."""
        a, cfg = world.agents, self.cfg
        need = a.needs[slot]
        tod = world.tick % self.tpd
        critical = world.config.needs.critical

        def ok(option: Option) -> bool:
            return bool(mask[option])

        if need[HUNGER] >= critical and ok(Option.GET_FED):
            return Option.GET_FED
        if need[ENERGY] >= critical and ok(Option.SLEEP):
            return Option.SLEEP
        leave_in = self._leave_in(world, slot, tod) if ok(Option.GO_TO_WORK) else None
        if leave_in is not None:
            # Before a shift: eat and wash first when there is time, else go.
            if need[HUNGER] >= cfg.lunch_trigger and ok(Option.GET_FED):
                return Option.GET_FED
            if leave_in > -cfg.snack_slack and need[HUNGER] >= cfg.breakfast_trigger and ok(Option.GET_FED):
                return Option.GET_FED  # a proper breakfast when there is time, else a quick snack
            if leave_in > cfg.wash_ticks and need[HYGIENE] >= cfg.breakfast_trigger and ok(Option.GET_CLEAN):
                return Option.GET_CLEAN
            if leave_in <= 0:
                return Option.GO_TO_WORK
        if is_night(world, tod) and need[ENERGY] > cfg.night_energy and ok(Option.SLEEP):
            if need[HUNGER] >= cfg.hunger_trigger and ok(Option.GET_FED):
                return Option.GET_FED
            return Option.SLEEP
        if need[HUNGER] >= cfg.hunger_trigger and ok(Option.GET_FED):
            return Option.GET_FED
        if need[HYGIENE] >= cfg.hygiene_trigger and ok(Option.GET_CLEAN):
            return Option.GET_CLEAN
        if need[ENERGY] >= cfg.energy_trigger and ok(Option.SLEEP):
            return Option.SLEEP
        if leave_in is not None:
            return Option.IDLE  # stay near home until it is time to go
        raw = a.item_index.get("raw_food")
        if raw is not None and a.inventory[slot, raw] < cfg.grocery_low_stock and ok(Option.SHOP_GROCERIES):
            if a.wallet[slot] >= world.economy.price("raw_food") * cfg.grocery_buy or a.inventory[slot, raw] == 0:
                return Option.SHOP_GROCERIES
        if need[SOCIAL] >= cfg.social_trigger and ok(Option.SOCIALISE):
            return Option.SOCIALISE
        if ok(Option.SOCIALISE) and world.rng.policy.random() < cfg.socialise_chance * (
            1 + float(a.personality[slot, 0])
        ):
            return Option.SOCIALISE
        return Option.IDLE


class RandomPolicy:
    """Uniformly random among unmasked options (the floor every learned policy must beat)."""

    def choose(self, world: World, slot: int, mask: np.ndarray) -> int:
        """Sample an allowed option from the policy stream."""
        allowed = mask.nonzero()[0]
        if not len(allowed):
            return int(Option.IDLE)
        return int(allowed[world.rng.policy.integers(len(allowed))])


__all__ = ["OPTION_COUNT", "OptionPolicy", "RandomPolicy", "ScriptedPolicy"]

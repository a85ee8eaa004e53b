"""Weather (sunny / rainy / cold on a random schedule) and utilities (power and water per place)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from townlet.config.vocabulary import WEATHERS, WeatherName
from townlet.world.events import EventKind

if TYPE_CHECKING:
    from townlet.world.state import World

WEATHER_STATES: tuple[WeatherName, ...] = WEATHERS  # the vocabulary's weathers, by the world's older spelling
RAINY, COLD = WEATHER_STATES.index("rainy"), WEATHER_STATES.index("cold")  # the states the rules read


class Weather:
    """The town's weather, changing every ``change_every`` ticks by a Markov transition."""

    def __init__(self, world: World) -> None:
        cfg = world.config.weather
        self.every = cfg.change_every
        self.matrix = np.array([[cfg.transitions[s].get(t, 0.0) for t in WEATHER_STATES] for s in WEATHER_STATES])
        self.rain_cost = cfg.rain_move_cost
        self.state = 0

    @property
    def name(self) -> str:
        """Current weather state name."""
        return WEATHER_STATES[self.state]

    @property
    def is_cold(self) -> bool:
        """Whether it is cold (energy decays faster outdoors)."""
        return self.state == COLD

    @property
    def is_raining(self) -> bool:
        """Whether it is raining (outdoor steps cost more)."""
        return self.state == RAINY

    def set(self, world: World, state: str) -> None:
        """Force a weather state (console, tests) and announce it."""
        new = WEATHER_STATES.index(state)
        if new != self.state:
            self.state = new
            world.emit(EventKind.WEATHER_CHANGED, detail=self.name)
            world.hook_event("weather_change", -1, detail=self.name)

    def update(self, world: World) -> None:
        """Maybe change the weather on schedule (events stream)."""
        if world.tick % self.every or world.tick == 0:
            return
        new = int(world.rng.events.choice(len(WEATHER_STATES), p=self.matrix[self.state]))
        if new != self.state:
            self.set(world, WEATHER_STATES[new])


class Utilities:
    """Power and water per place, with optional random faults that heal after a while."""

    def __init__(self, world: World) -> None:
        places = len(world.objects.place_ids)
        self.power_on = np.ones(places, dtype=bool)
        self.water_on = np.ones(places, dtype=bool)
        cfg = world.config.utilities
        self.fault_rate = cfg.fault_rate_per_day / world.ticks_per_day
        self.fault_duration = cfg.fault_duration
        self.repairs: list[tuple[int, str, int]] = []  # (tick, kind, place)

    def set(self, world: World, kind: str, on: bool, place: int | None = None, until: int | None = None) -> None:
        """Switch ``power`` or ``water`` on/off at one place (or everywhere); optionally schedule repair.

        The latest switch decides: it replaces any repair still pending for that utility there, so an
        old fault's repair cannot end a newer (or an open-ended) outage early.
        """
        arr = self.power_on if kind == "power" else self.water_on
        places = range(len(arr)) if place is None else [place]
        if self.repairs:
            touched = set(places)
            self.repairs = [r for r in self.repairs if r[1] != kind or r[2] not in touched]
        for p in places:
            if bool(arr[p]) != on:
                arr[p] = on
                world.emit(
                    EventKind.UTILITY_CHANGED, obj=-1, value=float(on), detail=f"{kind}:{world.objects.place_ids[p]}"
                )
                if kind == "power" and not on:
                    world.hook_event("power_cut", -1, detail=world.objects.place_ids[p])
            if until is not None:
                self.repairs.append((until, kind, p))

    def update(self, world: World) -> None:
        """Heal faults whose time has come and start random new ones (events stream)."""
        if self.repairs:
            due = [r for r in self.repairs if r[0] <= world.tick]
            if due:
                self.repairs = [r for r in self.repairs if r[0] > world.tick]
                for _, kind, place in due:
                    self.set(world, kind, True, place)
        if self.fault_rate and world.rng.events.random() < self.fault_rate:
            kind = "power" if world.rng.events.random() < 0.5 else "water"
            place = int(world.rng.events.integers(len(self.power_on)))
            lo, hi = self.fault_duration
            duration = int(world.rng.events.integers(lo, hi + 1))
            if (self.power_on if kind == "power" else self.water_on)[place]:  # already off: keep its repair
                self.set(world, kind, False, place, until=world.tick + duration)

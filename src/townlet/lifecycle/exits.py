"""Who leaves the town and who arrives: pending exits, the exit-storm guard, exits, and newcomers.

A trigger (see :mod:`townlet.lifecycle.triggers`) makes an exit *pending*; pending exits leave in trigger
order as the exit-storm guard allows (at most ``max_exits_per_day`` per in-sim day, ``exit_spacing`` ticks
apart). The guard delays exits, it never forgets them. Facility-caused exits (eviction, unemployment,
neglect) wait while a city-wide outage (power or water off in every place) lasts and for
``city_event_grace`` ticks after it. Each exit schedules a newcomer ``spawn_delay`` ticks later at a road
spawn tile, with the starter kit, a fresh id, an empty social memory and the leaver's home.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from townlet.lifecycle.triggers import FACILITY_REASONS, ExitTriggers
from townlet.world.events import EventKind

if TYPE_CHECKING:
    from townlet.world.state import World

REASONS = ("collapse", "eviction", "unemployment", "neglect", "age_out", "console")


@dataclass(frozen=True, slots=True)
class PendingExit:
    """An exit that has been triggered and waits for the guard."""

    tick: int
    slot: int
    agent: str
    reason: str


@dataclass(frozen=True, slots=True)
class Arrival:
    """A newcomer due at ``due`` who will live in ``home`` (-1: the least crowded home)."""

    due: int
    home: int


class Lifecycle:
    """Exits and arrivals of one town.

    Attributes:
        enabled: ``features.lifecycle`` is on.
        mortality: Automatic exits happen (console switch; starts as ``enabled``). Explicit exits always work.
        exit_cap: Exits allowed per in-sim day (console switch).
        spawn_delay: ``(lo, hi)`` ticks from an exit to the newcomer (console switch).
        pending: Triggered exits waiting for the guard, in trigger order.
        arrivals: Newcomers on their way.
        exits: Exits so far by reason; ``arrived``: newcomers so far.
        on_exit: Callbacks ``f(slot)`` run after an agent has left (the simulation forgets its plan).
    """

    def __init__(self, world: World) -> None:
        cfg = world.config.lifecycle
        self.world = world
        self.cfg = cfg
        self.enabled = world.config.features.lifecycle == "on"
        self.mortality = self.enabled
        self.exit_cap = cfg.max_exits_per_day
        self.spacing = cfg.exit_spacing
        self.spawn_delay: tuple[int, int] = (int(cfg.spawn_delay[0]), int(cfg.spawn_delay[1]))
        self.triggers = ExitTriggers(world)
        self.pending: list[PendingExit] = []
        self.arrivals: list[Arrival] = []
        self.exits: Counter[str] = Counter()
        self.arrived = 0
        self.day = 0
        self.exits_today = 0
        self.last_exit = -(10**12)
        self.suppressed_until = -1  # last tick facility-caused exits wait (city-wide outage + grace)
        self.on_exit: list[Callable[[int], None]] = []

    # -- the phase ----------------------------------------------------------------------------------

    def update(self, world: World) -> None:
        """One tick: newcomers who are due arrive, triggers fire, pending exits leave as the guard allows."""
        if world.tick // world.ticks_per_day != self.day:
            self._roll_day(world.tick)
        if self.arrivals:
            self._arrive_due(world)
        if not self.mortality:
            if self.pending:
                self.pending.clear()  # mortality switched off: nobody is made to leave
            return
        u = world.utilities
        if not (u.power_on.any() and u.water_on.any()):
            self.suppressed_until = world.tick + self.cfg.city_event_grace
        suppressed = self.suppressed
        for slot, reason in self.triggers.update(world, suppressed, {p.slot for p in self.pending}):
            self._trigger(world, slot, reason)
        if self.pending:
            self._leave_as_allowed(world, suppressed)

    @property
    def suppressed(self) -> bool:
        """Whether facility-caused exits are held back now (city-wide outage or its grace window)."""
        return self.world.tick <= self.suppressed_until

    def _roll_day(self, tick: int) -> None:
        day = tick // self.world.ticks_per_day
        if day != self.day:
            self.day = day
            self.exits_today = 0

    def _trigger(self, world: World, slot: int, reason: str) -> None:
        if any(p.slot == slot for p in self.pending):
            return
        self.pending.append(PendingExit(world.tick, slot, world.agents.name(slot), reason))
        world.emit(EventKind.EXIT_PENDING, agent=slot, detail=reason)
        if reason != "collapse":  # a collapse already announced itself as near-death
            world.hook_event("agent_near_death", slot, detail=reason)

    def allowed_now(self) -> bool:
        """Whether the exit-storm guard lets one more agent leave this tick."""
        return self.exits_today < self.exit_cap and self.world.tick - self.last_exit >= self.spacing

    def _leave_as_allowed(self, world: World, suppressed: bool) -> None:
        a = world.agents
        for p in list(self.pending):
            if not a.alive[p.slot] or a.ids[p.slot] != p.agent:
                self.pending.remove(p)  # already gone (the console, another rule)
            elif suppressed and p.reason in FACILITY_REASONS:
                continue
            elif not self.allowed_now():
                return
            else:
                self.exit(p.slot, p.reason)

    # -- exits and arrivals -------------------------------------------------------------------------

    def exit(self, slot: int, reason: str) -> None:
        """Make an agent leave now (bypasses the guard, but counts toward it) and schedule a newcomer.

        Emits ``AGENT_EXIT`` (agent=slot, detail=reason) and fires the ``agent_exit`` hook before the agent
        is removed from the world.

        Raises:
            ValueError: for an empty slot or an unknown reason.
        """
        w, a = self.world, self.world.agents
        if not (0 <= slot < a.capacity) or not a.alive[slot]:
            raise ValueError(f"slot {slot} holds no agent")
        if reason not in REASONS:
            raise ValueError(f"unknown exit reason {reason!r} (known: {', '.join(REASONS)})")
        self._roll_day(w.tick)
        home = int(a.home[slot])
        w.emit(EventKind.AGENT_EXIT, agent=slot, detail=reason)
        w.hook_event("agent_exit", slot, detail=reason)
        w.remove(slot)
        self.pending = [p for p in self.pending if p.slot != slot]
        self.triggers.forget(slot)
        for callback in self.on_exit:
            callback(slot)
        self.exits[reason] += 1
        self.exits_today += 1
        self.last_exit = w.tick
        lo, hi = self.spawn_delay
        self.arrivals.append(Arrival(w.tick + int(w.rng.events.integers(lo, hi + 1)), home))

    def schedule_arrival(self, delay: int = 0, home: int = -1) -> None:
        """Have a newcomer arrive ``delay`` ticks from now (the least crowded home unless ``home``)."""
        self.arrivals.append(Arrival(self.world.tick + max(delay, 0), home))

    def arrive(self, home: int = -1) -> int:
        """A newcomer arrives now at a road spawn tile; returns its slot (-1 when the town is full)."""
        w, a = self.world, self.world.agents
        if a.free_slot() < 0:
            return -1
        if home < 0:
            crowd = np.bincount(a.home[a.alive], minlength=max(w.homes) + 1)[w.homes]
            home = int(w.homes[int(np.argmin(crowd))])
        tile = int(w.spawn_tiles[int(w.rng.events.integers(len(w.spawn_tiles)))])
        slot = w.spawn(home=home, tile=tile)
        self.arrived += 1
        w.emit(EventKind.AGENT_ARRIVED, agent=slot, detail=a.name(slot))
        return slot

    def _arrive_due(self, world: World) -> None:
        waiting = []
        for arrival in self.arrivals:
            if arrival.due > world.tick or self.arrive(arrival.home) < 0:
                waiting.append(arrival)  # not yet, or no free slot: try again next tick
        self.arrivals = waiting

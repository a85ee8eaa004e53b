"""The perturbation schedule: daily dice, staggering of city-wide events, console triggers and cancels.

At the start of each in-sim day (when ``features.perturbations`` is on) every kind rolls its
``daily_probability`` on the ``events`` stream; a hit is scheduled at a random tick inside ``window``.
City-wide events (price spike, blackout, water outage, closed facility) never overlap: one due while
another runs, or within ``stagger_gap`` ticks of its end, is pushed back to ``stagger_gap`` after it (and
dropped if that is past the day's window, so the dice never pile up).
An arranged meet brings the pair with the strongest rivalry among agents free to meet (not at work, asleep
or in need) to a café table, retrying every ``retry_every`` ticks inside the window; both then rest for
``agent_cooldown`` ticks before they can be targeted again. Console triggers start at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from townlet.config.errors import ConfigError
from townlet.config.models import PerturbationConfig, clock_to_tick
from townlet.perturbations.kinds import CITY_KINDS, KINDS, Perturbation, apply, restore
from townlet.world.events import EventKind
from townlet.world.relationships import RIVALRY

if TYPE_CHECKING:
    from townlet.world.state import World

PARAMS = {
    "price_spike": {"duration", "item", "magnitude"},
    "blackout": {"duration"},
    "water_outage": {"duration"},
    "closed_facility": {"duration", "place"},
    "arranged_meet": {"duration", "agents", "place"},
}
Summon = Callable[[int, str, int], bool]


class Perturbations:
    """Scheduled and running perturbations of one town.

    Attributes:
        enabled: The daily dice roll (``features.perturbations``; console switch).
        active: Running perturbations, oldest first.
        scheduled: ``(tick, kind)`` rolled for later today (or pushed back by staggering).
        started: Perturbations started so far, by kind.
        cooldown_until: ``int64[C]`` tick until which each agent cannot be targeted.
        summon: ``f(slot, place_kind, partner) -> bool`` that sends an agent to chat at a place, near its partner
            (-1: none yet); set by the simulation. Without it an arranged meet only announces itself.
    """

    def __init__(self, world: World) -> None:
        cfg = world.config.perturbations
        self.world = world
        self.cfg = cfg
        self.enabled = world.config.features.perturbations == "on"
        self.kinds: dict[str, PerturbationConfig] = {kind: getattr(cfg, kind) for kind in KINDS}
        self._check_targets(world)
        tpd = world.ticks_per_day
        self.window = (clock_to_tick(cfg.window[0], tpd), clock_to_tick(cfg.window[1], tpd))
        self.active: list[Perturbation] = []
        self.scheduled: list[tuple[int, str]] = []
        self.started: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.next_id = 1
        self.last_city_end = -(10**12)
        self.cooldown_until = np.zeros(world.agents.capacity, dtype=np.int64)
        self.summon: Summon | None = None

    def _check_targets(self, world: World) -> None:
        source = str(world.loaded.source)
        for item in self.kinds["price_spike"].targets:
            if item not in world.economy.prices:
                raise ConfigError(source, "perturbations.price_spike.targets", f"unknown item {item!r}")
        for kind in ("closed_facility", "arranged_meet"):
            for place_kind in self.kinds[kind].targets:
                if place_kind not in world.objects.places_of_kind:
                    raise ConfigError(source, f"perturbations.{kind}.targets", f"no place of kind {place_kind!r}")

    # -- the phase ----------------------------------------------------------------------------------

    def update(self, world: World) -> None:
        """One tick: end what is over, roll the dice at midnight, start what is due."""
        tick = world.tick
        if self.active:
            for p in [p for p in self.active if p.end <= tick]:
                self._end(world, p)
        if self.enabled and tick % world.ticks_per_day == 0:
            self._roll(world)
        if self.scheduled and self.scheduled[0][0] <= tick:
            due = [s for s in self.scheduled if s[0] <= tick]
            self.scheduled = [s for s in self.scheduled if s[0] > tick]
            for _, kind in due:
                self._start_scheduled(world, kind)

    def _roll(self, world: World) -> None:
        rng = world.rng.events
        day_start = world.tick
        for kind in KINDS:
            if rng.random() < self.kinds[kind].daily_probability:
                at = day_start + int(rng.integers(self.window[0], self.window[1] + 1))
                self.scheduled.append((at, kind))
        self.scheduled.sort(key=lambda s: (s[0], KINDS.index(s[1])))

    def _start_scheduled(self, world: World, kind: str) -> None:
        if kind in CITY_KINDS:
            clear_at = max([p.end for p in self.active if p.kind in CITY_KINDS] + [self.last_city_end])
            clear_at += self.cfg.stagger_gap
            if world.tick < clear_at:
                if self._too_late(world, clear_at):
                    self.skipped[kind] += 1  # no room left today: the day's dice are not carried over
                else:
                    self.scheduled.append((clear_at, kind))  # staggered behind the city event in progress
                    self.scheduled.sort(key=lambda s: (s[0], KINDS.index(s[1])))
                return
        params = self._draw(world, kind)
        if params is None:
            retry = world.tick + self.cfg.retry_every
            if not self._too_late(world, retry):
                self.scheduled.append((retry, kind))  # e.g. the rivals are at work: try again later today
                self.scheduled.sort(key=lambda s: (s[0], KINDS.index(s[1])))
            else:
                self.skipped[kind] += 1
            return
        self._start(world, kind, **params)

    def _too_late(self, world: World, tick: int) -> bool:
        """Whether ``tick`` falls past the end of today's window."""
        tpd = world.ticks_per_day
        return tick // tpd != world.tick // tpd or tick % tpd > self.window[1]

    def _draw(self, world: World, kind: str, given: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Parameters for a perturbation: ``given`` ones kept, the rest drawn (None: nothing to act on)."""
        rng, spec = world.rng.events, self.kinds[kind]
        params = dict(given or {})
        if "duration" not in params:
            params["duration"] = int(rng.integers(spec.duration[0], spec.duration[1] + 1))
        if kind == "price_spike":
            if "item" not in params:
                if not spec.targets:
                    return None
                params["item"] = spec.targets[int(rng.integers(len(spec.targets)))]
            if "magnitude" not in params:
                params["magnitude"] = round(float(rng.uniform(*spec.magnitude)), 2)
        elif kind == "closed_facility" and "place" not in params:
            places = [p for k in spec.targets for p in world.objects.places_of_kind.get(k, [])]
            if not places:
                return None
            params["place"] = world.objects.place_ids[places[int(rng.integers(len(places)))]]
        elif kind == "arranged_meet":
            if "agents" not in params:
                pair = self.top_rivals(world)
                if pair is None:
                    return None
                params["agents"] = pair
            if "place" not in params:
                if not spec.targets:
                    return None
                params["place"] = spec.targets[int(rng.integers(len(spec.targets)))]
        return params

    # -- console ------------------------------------------------------------------------------------

    def trigger(self, kind: str, **params: Any) -> Perturbation:
        """Start a perturbation now (console); missing parameters are drawn as for a scheduled one.

        Call it from a queued command (``Simulation.enqueue``) so its events land in the tick that applies it.

        Parameters by kind: ``duration`` (ticks) for all; ``item``, ``magnitude`` (price multiplier) for
        ``price_spike``; ``place`` (place id or kind) for ``closed_facility``; ``agents`` (two slots or ids) and
        ``place`` (place kind) for ``arranged_meet``.

        Raises:
            ValueError: for an unknown kind or parameter, or one with nothing to act on.
        """
        w = self.world
        if kind not in PARAMS:
            raise ValueError(f"unknown perturbation {kind!r} (known: {', '.join(KINDS)})")
        unknown = set(params) - PARAMS[kind]
        if unknown:
            raise ValueError(f"{kind} takes {', '.join(sorted(PARAMS[kind]))}, not {', '.join(sorted(unknown))}")
        given = {k: v for k, v in params.items() if v is not None}
        if kind == "arranged_meet" and "agents" in given:
            given["agents"] = tuple(self._slot(x) for x in given["agents"])
            if len(given["agents"]) != 2 or given["agents"][0] == given["agents"][1]:
                raise ValueError("arranged_meet takes two different agents")
        drawn = self._draw(w, kind, given)
        if drawn is None:
            missing = ", ".join(sorted(PARAMS[kind] - set(given)))
            raise ValueError(f"{kind}: nothing to act on (give {missing})")
        return self._start(w, kind, **drawn)

    def _slot(self, agent: int | str) -> int:
        a = self.world.agents
        slot = a.slot_of.get(agent, -1) if isinstance(agent, str) else int(agent)
        if not (0 <= slot < a.capacity) or not a.alive[slot]:
            raise ValueError(f"no agent {agent!r}")
        return slot

    def set_enabled(self, on: bool) -> list[tuple[int, str]]:
        """Switch the schedule on (dice from the next midnight) or off (nothing scheduled starts any more).

        Running perturbations are left to end on time (``cancel`` ends one early); console triggers still work.

        Returns:
            The ``(tick, kind)`` entries dropped from today's schedule (empty when switching on).
        """
        self.enabled = bool(on)
        dropped: list[tuple[int, str]] = []
        if not on:
            dropped, self.scheduled = self.scheduled, []
        return dropped

    def cancel(self, perturbation_id: int) -> bool:
        """End a running perturbation now (restoring the town); False when no such one runs."""
        for p in self.active:
            if p.id == perturbation_id:
                self._end(self.world, p)
                return True
        return False

    # -- start and end ------------------------------------------------------------------------------

    def _start(
        self,
        world: World,
        kind: str,
        duration: int,
        item: str = "",
        magnitude: float = 1.0,
        place: str = "",
        agents: tuple[int, ...] = (),
    ) -> Perturbation:
        if int(duration) < 1:
            raise ValueError("duration must be at least 1 tick")
        p = Perturbation(self.next_id, kind, world.tick, world.tick + int(duration))
        if kind == "price_spike":
            if item not in world.economy.prices:
                raise ValueError(f"unknown item {item!r}")
            if not float(magnitude) > 0:
                raise ValueError("magnitude must be positive")
            p.target, p.magnitude = item, float(magnitude)
        elif kind == "closed_facility":
            p.place = self._place(world, place)
            p.target = world.objects.place_ids[p.place]
        elif kind == "arranged_meet":
            if place not in world.objects.places_of_kind:
                raise ValueError(f"no place of kind {place!r}")
            p.target, p.agents = place, tuple(int(s) for s in agents)
        self.next_id += 1
        apply(world, p, self.active)
        self.active.append(p)
        self.started[kind] += 1
        a, b = (p.agents + (-1, -1))[:2]
        world.emit(EventKind.PERTURBATION_STARTED, agent=a, other=b, value=float(p.id), detail=p.detail)
        if kind == "arranged_meet":
            partner = -1
            for slot in p.agents:
                self.cooldown_until[slot] = world.tick + self.cfg.agent_cooldown
                if self.summon is not None:
                    self.summon(slot, place, partner)
                partner = slot
        return p

    def _place(self, world: World, place: str) -> int:
        o = world.objects
        if place in o.place_ids:
            return o.place_ids.index(place)
        of_kind = o.places_of_kind.get(place, [])
        if not of_kind:
            raise ValueError(f"no place or place kind {place!r}")
        return of_kind[int(world.rng.events.integers(len(of_kind)))]

    def _end(self, world: World, p: Perturbation) -> None:
        self.active.remove(p)
        restore(world, p, self.active)
        if p.kind in CITY_KINDS:
            self.last_city_end = max(self.last_city_end, world.tick)
        a, b = (p.agents + (-1, -1))[:2]
        world.emit(EventKind.PERTURBATION_ENDED, agent=a, other=b, value=float(p.id), detail=p.detail)

    # -- targets ------------------------------------------------------------------------------------

    def top_rivals(self, world: World) -> tuple[int, int] | None:
        """The pair with the strongest rivalry among agents free to meet now, or None."""
        a, rel, emp = world.agents, world.relationships, world.employment
        if not rel.enabled:
            return None
        tod = world.tick % world.ticks_per_day
        jobs = np.maximum(a.job, 0)
        if len(emp):
            at_work = (a.job >= 0) & (emp.start[jobs] - emp.cfg.early_arrival <= tod) & (tod < emp.end[jobs])
        else:
            at_work = np.zeros(a.capacity, dtype=bool)
        free = (
            a.alive
            & ~a.asleep
            & ~at_work
            & (self.cooldown_until <= world.tick)
            & (a.needs.max(axis=1) < world.config.needs.critical)
        )
        other = rel.other
        rivalry = np.where((other >= 0) & free[:, None] & free[np.maximum(other, 0)], rel.values[:, :, RIVALRY], -1.0)
        best = np.unravel_index(int(np.argmax(rivalry)), rivalry.shape)
        if rivalry[best] < self.cfg.min_rivalry:
            return None
        return int(best[0]), int(other[best])

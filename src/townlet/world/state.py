"""The World: the town's whole mutable state and the methods every rule and command goes through."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from townlet.config.errors import ConfigError
from townlet.config.loader import LoadedConfig
from townlet.config.models import NEED_NAMES
from townlet.config.town_map import TileKind, TownMap, load_town_map, tile_town_map
from townlet.world import actions, arbitration, movement, scans
from townlet.world.affordances import Affordance, load_manifest
from townlet.world.agents import PERSONALITY_TRAITS, Activity, AgentTable
from townlet.world.economy import Economy
from townlet.world.employment import Employment
from townlet.world.events import Event, EventKind
from townlet.world.grid import Grid
from townlet.world.hooks import HookError, HookPayload, HookRegistry
from townlet.world.identity import IdentitySlots
from townlet.world.needs import NeedRules
from townlet.world.objects import ObjectTable
from townlet.world.personality import halton_personality
from townlet.world.queues import Queues
from townlet.world.relationships import Relationships
from townlet.world.rng import RngStreams
from townlet.world.weather import Utilities, Weather


class World:
    """Everything in the town, plus the primitives that change it.

    Attributes:
        tick: The current tick (the one being simulated during ``step``).
        events: This tick's events, in the order they happened.
        counters: Run-long counts (``ghost_steps``, ``queue_conflicts``, ``spawned``...).
    """

    def __init__(self, loaded: LoadedConfig, rng: RngStreams, town: TownMap | None = None) -> None:
        self.loaded = loaded
        self.config = cfg = loaded.config
        self.rng = rng
        self.ticks_per_day = cfg.time.ticks_per_day
        if town is None:
            town = load_town_map(loaded.map_path)
            if cfg.town.scale > 1:
                town = tile_town_map(town, cfg.town.scale)
        self.town = town
        self.grid = Grid(town, cfg.town.paths)
        self.objects = ObjectTable(town, self.grid)
        self.grid.mark_in_the_way(self.objects.access)
        items = sorted(set(cfg.economy.items) | set(cfg.economy.starting_inventory) | {"clean_clothes"})
        self.manifest = load_manifest(
            loaded.affordances_path, set(items), set(self.objects.type_names), self.ticks_per_day
        )
        try:
            self.hooks = HookRegistry.from_modules(cfg.hooks.modules, cfg.hooks.allowed_modules)
        except HookError as exc:
            raise ConfigError(str(loaded.source), "hooks.modules", str(exc)) from None
        for aff in self.manifest.affordances:
            for phase, names in aff.hooks.items():
                for name in names:
                    if not self.hooks.known(name):
                        raise ConfigError(
                            str(loaded.affordances_path),
                            f"affordances.{aff.id}.hooks.{phase}",
                            f"unknown hook {name!r}",
                        )
        self.agents = AgentTable(cfg.population.slots, tuple(items))
        self.occupancy = np.zeros(self.grid.size, dtype=np.int16)
        # Per-tile scratch for the movement kernels (left zeroed / -1 between uses).
        self.scratch_counts = np.zeros(self.grid.size, dtype=np.int64)
        self.scratch_slots = np.full(self.grid.size, -1, dtype=np.int64)
        # Rows of slots found by this tick's scans (named in townlet.world.scans), each read before its next use.
        self.found = np.empty((scans.FOUND_ROWS, self.agents.capacity), dtype=np.int64)
        self.step_into = np.empty(self.agents.capacity, dtype=np.int64)  # the tile each walker steps into
        self.wage_due = np.empty(self.agents.capacity, dtype=np.float64)  # the pay of each earner this tick
        ident = cfg.identity
        self.identity = IdentitySlots(ident.embedding_slots, ident.reuse_cooldown, self.agents.capacity)
        self.tick = 0
        self.events: list[Event] = []
        self.counters: Counter[str] = Counter()
        self.weather = Weather(self)
        self.utilities = Utilities(self)
        self.place_open = np.ones(len(self.objects.place_ids), dtype=bool)  # False: closed to the public
        self.economy = Economy(self)
        self.employment = Employment(self)
        self.relationships = Relationships(self)
        self.queues = Queues(self)
        self.needs = NeedRules(self)
        self.homes = self.objects.places_of_kind.get("home", [])
        if not self.homes:
            raise ConfigError(str(loaded.map_path), "places", "the town has no home")
        self.spawn_tiles = np.array([self.grid.tile(x, y) for x, y in town.spawn_tiles], dtype=np.int32)
        self._next_id = 0
        self._personality_offset = int(rng.world.integers(0, 1 << 16))

    # -- events and hooks -------------------------------------------------------------------------

    def emit(
        self, kind: EventKind, agent: int = -1, other: int = -1, obj: int = -1, value: float = 0.0, detail: str = ""
    ) -> None:
        """Append an event to this tick's list."""
        self.events.append(Event(self.tick, kind, agent, other, obj, value, detail))

    def hook_event(self, event: str, slot: int, obj: int = -1, detail: str = "") -> None:
        """Fire a global hook event (cheap when nobody listens)."""
        if not self.hooks.has_global(event):
            return
        payload = HookPayload(
            tick=self.tick,
            phase=event,
            agent=self.agents.ids[slot] if slot >= 0 else None,
            object=self.objects.ids[obj] if obj >= 0 else None,
            detail=detail,
        )
        for message in self.hooks.emit(event, payload):
            self.emit(EventKind.HOOK_ERROR, agent=slot, obj=obj, detail=message)

    # -- the body's steps ---------------------------------------------------------------------------

    def go_use(self, slot: int, obj: int, aff: int) -> None:
        """Send an agent to use ``obj`` with affordance ``aff`` (it asks for the object on the way)."""
        a = self.agents
        a.target_obj[slot] = obj
        a.target_aff[slot] = aff
        a.activity[slot] = Activity.MOVING
        a.dest_field[slot] = self.objects.field_of(obj)
        a.requested[slot] = False
        a.step_done[slot] = False
        a.step_failed[slot] = False
        a.step_started[slot] = self.tick
        a.last_progress[slot] = self.tick

    def go_to(self, slot: int, tile: int) -> None:
        """Send an agent walking to a tile (no object, nothing to ask for)."""
        a = self.agents
        a.target_obj[slot] = -1
        a.target_aff[slot] = -1
        a.activity[slot] = Activity.MOVING
        a.dest_field[slot] = self.grid.field((tile,))
        a.requested[slot] = True
        a.step_done[slot] = False
        a.step_failed[slot] = False
        a.step_started[slot] = self.tick
        a.last_progress[slot] = self.tick

    def loiter_tile(self, slot: int, place: int) -> int:
        """The free tile of ``place`` nearest the agent where standing blocks nobody, or -1."""
        if place < 0:
            return -1
        spots = self.grid.loiter_spots(place)
        return int(scans.nearest_free(spots, self.occupancy, int(self.agents.tile[slot]), self.grid.width))

    def wait(self, slot: int, ticks: int) -> None:
        """Make an agent wait where it stands for ``ticks`` ticks."""
        a = self.agents
        a.activity[slot] = Activity.WAITING
        a.wait_until[slot] = self.tick + ticks
        a.dest_field[slot] = -1
        a.step_done[slot] = False
        a.step_failed[slot] = False
        a.last_progress[slot] = self.tick

    def fail_step(self, slot: int, reason: str) -> None:
        """End the agent's current step as failed, releasing anything it held."""
        a = self.agents
        obj = int(a.target_obj[slot])
        self.queues.drop_agent(self, slot)
        a.clear_step(slot)
        a.step_failed[slot] = True
        a.asleep[slot] = False
        a.fail_reason[slot] = reason
        a.last_success[slot] = False
        if obj >= 0:
            a.target_obj[slot] = obj  # keep for the controller's retry logic

    def cancel_step(self, slot: int) -> None:
        """Abandon the current step (an option switch, a teleport, leaving town): release and go idle.

        An affordance cut short this way fails cleanly: its fail hooks run with reason ``interrupted``.
        """
        if self.agents.activity[slot] == Activity.USING:
            actions.fail(self, slot, "interrupted")
        self.queues.drop_agent(self, slot)
        self.agents.clear_step(slot)
        self.agents.asleep[slot] = False

    def set_place_open(self, place: int, is_open: bool) -> None:
        """Open or close a place to the public (a closed facility).

        Closing fails every use of its objects in progress and every walk or queue toward them (reason
        ``closed``), releasing their reservations; staff at work there (wage affordances) carry on.
        """
        self.place_open[place] = is_open
        if is_open:
            return
        a = self.agents
        busy = a.alive & (a.target_obj >= 0) & (a.activity != Activity.IDLE) & (a.activity != Activity.WAITING)
        there = busy & np.isin(a.target_obj, self.objects.in_place[place])
        for slot in there.nonzero()[0]:
            s = int(slot)
            if self.manifest.affordances[int(a.target_aff[s])].wage:
                continue
            if a.activity[s] == Activity.USING:
                actions.fail(self, s, "closed")
            else:
                self.fail_step(s, "closed")

    def arbitrate(self) -> None:
        """Queue and reservation rules, then movement, then starts for agents who reached their object."""
        a, found = self.agents, self.found
        # One compiled survey runs the asking scan, the queue rules' scan and the movement plan, stopping after
        # the first that finds work: the Python acting on it runs before the later scans, as if run one by one.
        asking, due, arrived, lost, going, waits = arbitration.survey(self, arbitration.ASK)
        if asking:
            slots = found[scans.ASKING, :asking].tolist()
            self.queues.request(self, [(s, int(a.target_obj[s])) for s in slots])
            asking, due, arrived, lost, going, _ = arbitration.survey(self, arbitration.DUE)
        if due:
            self.queues.apply_due(self, due)
            asking, due, arrived, lost, going, _ = arbitration.survey(self, arbitration.PLAN)
        if lost or going:
            movement.advance(self, lost, going)
        if arrived:
            n = scans.settle_arrivals(
                found[scans.ARRIVED, :arrived],
                a.activity,
                a.target_obj,
                a.requested,
                a.dest_field,
                a.step_done,
                found[scans.STARTING],
            )
            for slot in found[scans.STARTING, :n].tolist():
                if a.activity[slot] == Activity.MOVING and a.requested[slot]:  # (an earlier start may change it)
                    actions.start(self, slot)
        if waits:  # (else nobody's wait ends: the survey counted them, and nothing here starts a wait)
            scans.finish_waits(a.alive, a.activity, a.wait_until, self.tick, a.step_done)

    def chat_partner(self, slot: int) -> int:
        """Who the agent can talk to: someone within chat radius, or anyone spending time in the same place.

        Agents already socialising are preferred, then the nearest; -1 when nobody is around.
        """
        a = self.agents
        return int(
            scans.chat_partner(
                slot,
                a.alive,
                a.tile,
                a.activity,
                a.target_aff,
                self.grid.place_index,
                self.manifest.chat,
                self.grid.width,
                self.config.relationships.chat_radius,
            )
        )

    def co_users(self, slot: int, aff: Affordance) -> list[int]:
        """Other agents using the same affordance in the same place right now (shared meals)."""
        a, o = self.agents, self.objects
        place = o.place[a.target_obj[slot]]
        same = a.alive & (a.activity == Activity.USING) & (a.target_aff == aff.index)
        same[slot] = False
        return [int(s) for s in same.nonzero()[0] if o.place[a.target_obj[s]] == place]

    # -- population ---------------------------------------------------------------------------------

    def spawn(
        self,
        agent_id: str | None = None,
        home: int | None = None,
        tile: int | None = None,
        needs: dict[str, float] | None = None,
    ) -> int:
        """Add an agent (named ``agent_<n>`` unless given) at home or on ``tile``; return its slot."""
        a, cfg = self.agents, self.config
        slot = a.free_slot()
        if slot < 0:
            raise ValueError(f"the town is full ({a.capacity} slots)")
        n = self._next_id
        self._next_id += 1
        agent_id = agent_id or f"agent_{n}"
        if home is None:
            home = self.homes[(n // cfg.population.household_size) % len(self.homes)]
        if tile is None:
            tile = self._free_tile_in(home)
        a.add(agent_id, slot, tile, self.tick)
        a.home[slot] = home
        init = cfg.needs.initial | (needs or {})
        a.needs[slot] = [
            init.get(name, 0.0) if self.needs.rates[k] or needs else 0.0 for k, name in enumerate(NEED_NAMES)
        ]
        a.wallet[slot] = cfg.economy.starting_wallet_rents * cfg.economy.rent_per_day
        self.economy.treasury -= float(a.wallet[slot])
        for item, count in cfg.economy.starting_inventory.items():
            a.inventory[slot, a.item_index[item]] = count
        a.personality[slot] = halton_personality(n, len(PERSONALITY_TRAITS), self._personality_offset)
        self.occupancy[tile] += 1
        self.economy.rent_unpaid_days[slot] = 0
        _, forced = self.identity.allocate(slot, self.tick)
        if forced:
            self.counters["identity_forced_reuse"] += 1
            self.emit(EventKind.IDENTITY_REUSED, agent=slot, value=float(self.identity.of_agent[slot]))
        self.counters["spawned"] += 1
        self.hook_event("spawn", slot)
        self.hook_event("agent_spawn", slot)
        return slot

    def remove(self, slot: int) -> None:
        """Take an agent out of the town: releases everything it held and every tie to it."""
        self.cancel_step(slot)
        self.employment.fire(self, slot, "left_town")
        self.relationships.forget(slot)
        self.identity.release(slot, self.tick)
        self.occupancy[self.agents.tile[slot]] -= 1
        self.economy.treasury += float(self.agents.wallet[slot])  # money returns to the town
        self.agents.wallet[slot] = 0.0
        self.agents.remove(slot)

    def _free_tile_in(self, place: int) -> int:
        tiles = (
            (self.grid.place_index == place)
            & self.grid.walkable
            & (self.occupancy == 0)
            & (self.grid.kinds != int(TileKind.DOOR))
        ).nonzero()[0]
        if not len(tiles):
            tiles = ((self.grid.place_index == place) & self.grid.walkable).nonzero()[0]
        return int(tiles[0])

    def teleport(self, slot: int, tile: int) -> None:
        """Move an agent instantly (console, fuzzing); its current step is abandoned."""
        if not (0 <= tile < self.grid.size) or not self.grid.walkable[tile]:
            raise ValueError("target tile is not walkable")
        if not self.grid.outdoors[tile] and self.occupancy[tile] > 0:
            raise ValueError("target tile is occupied")
        self.cancel_step(slot)
        self.occupancy[self.agents.tile[slot]] -= 1
        self.agents.tile[slot] = tile
        self.occupancy[tile] += 1
        self.emit(EventKind.TELEPORT, agent=slot, value=float(tile))

    def set_need(self, slot: int, need: str, value: float) -> None:
        """Set one need of an agent (console ``setneed``); crossing ``needs.critical`` raises the usual event."""
        if need not in NEED_NAMES:
            raise KeyError(need)
        if not 0.0 <= value <= 1.0:
            raise ValueError("a need lies in [0, 1]")
        k = NEED_NAMES.index(need)
        before = float(self.agents.needs[slot, k])
        self.agents.needs[slot, k] = value
        critical = self.config.needs.critical
        if before < critical <= value:
            self.emit(EventKind.NEED_THRESHOLD, agent=slot, value=float(value), detail=need)
            self.hook_event("need_threshold", slot, detail=need)

    def summary(self) -> dict[str, Any]:
        """A few headline numbers about the town right now."""
        a = self.agents
        return {
            "tick": self.tick,
            "agents": int(a.alive.sum()),
            "weather": self.weather.name,
            "money": round(self.economy.total_money(self), 6),
        }

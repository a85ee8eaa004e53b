"""Primitive actions (wait, move N/E/S/W, interact with an affordance): their mask and how they drive the world.

The primitive action space, used when ``env.action_level`` is ``primitives``, is ``Discrete(5 + A)`` for a
manifest of ``A`` affordances:

| index | primitive | allowed when |
|---|---|---|
| 0 | wait (keep using the running affordance) | always |
| 1..4 | move north / east / south / west | the tile is walkable, in the map, free if indoors, step due in rain |
| 5 + i | interact: start affordance ``i`` | standing at a free object of its type, in its place, preconditions hold |

A move abandons a running affordance (it fails as ``interrupted``); in rain an outdoor step waits for the same
cadence as walking. An interaction is not allowed while an affordance runs, at an object on fairness cooldown,
or at an object that someone holds, uses or queues for.

Primitives go through the same world rules as options: an interaction reserves the object and starts the
affordance (hooks, effects, wages, failures as usual); a move updates occupancy like a walking step. Talk, buy,
sleep and equip are affordances (``chat_bench``, ``order_meal``, ``sleep``, ``change_clothes``...), so they are
interactions. Two agents stepping into one free indoor tile in the same tick: the lower slot moves, the other is
blocked (not an invalid action).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

from townlet.world import actions
from townlet.world.agents import Activity

if TYPE_CHECKING:
    from townlet.world.state import World


class Primitive(IntEnum):
    """The fixed head of the primitive action space (interactions follow from ``INTERACT``)."""

    WAIT = 0
    NORTH = 1
    EAST = 2
    SOUTH = 3
    WEST = 4
    INTERACT = 5


MOVES = (Primitive.NORTH, Primitive.EAST, Primitive.SOUTH, Primitive.WEST)
_DX = np.array([0, 1, 0, -1], dtype=np.int32)
_DY = np.array([-1, 0, 1, 0], dtype=np.int32)


def primitive_count(world: World) -> int:
    """Size of the primitive action space: 5 + the number of affordances."""
    return int(Primitive.INTERACT) + len(world.manifest.affordances)


def primitive_labels(world: World) -> tuple[str, ...]:
    """A name per primitive action index (``wait``, ``north``..., ``interact:<affordance id>``)."""
    head = ("wait", "north", "east", "south", "west")
    return head + tuple(f"interact:{a.id}" for a in world.manifest.affordances)


class PrimitiveRules:
    """Static lookups for primitive masks: which objects each tile reaches, and affordances per object type."""

    def __init__(self, world: World) -> None:
        g, o = world.grid, world.objects
        by_tile: dict[int, list[int]] = {}
        for obj, tiles in enumerate(o.access):
            for t in tiles:
                by_tile.setdefault(int(t), []).append(obj)
        width = max((len(v) for v in by_tile.values()), default=1)
        self.tile_objects = np.full((g.size, width), -1, dtype=np.int32)
        for t, objs in by_tile.items():
            self.tile_objects[t, : len(objs)] = objs
        self.has_object = self.tile_objects.max(axis=1) >= 0  # any object on the tile
        affs = world.manifest.affordances
        self.affordances_of_type: dict[str, list[int]] = {}
        for aff in affs:
            self.affordances_of_type.setdefault(aff.object_type, []).append(aff.index)
        self.place_kind = [o.place_kinds[int(p)] for p in o.place]

    def mask(self, world: World, slots: np.ndarray) -> np.ndarray:
        """``bool[n, 5 + A]`` which primitives each agent could take now."""
        a = world.agents
        n = len(slots)
        mask = np.zeros((n, primitive_count(world)), dtype=bool)
        mask[:, Primitive.WAIT] = True
        if not n:
            return mask
        mask[:, 1:5] = self._move_ok(world, slots)
        idle = a.activity[slots] != Activity.USING
        near = self.has_object[a.tile[slots]] & idle
        for i in near.nonzero()[0]:
            slot = int(slots[i])
            for obj in self.tile_objects[a.tile[slot]]:
                if obj < 0:
                    break
                self._interactions(world, slot, int(obj), mask[i])
        return mask

    def _move_ok(self, world: World, slots: np.ndarray) -> np.ndarray:
        a, g = world.agents, world.grid
        here = a.tile[slots]
        x, y = here % g.width, here // g.width
        tx, ty = x[:, None] + _DX, y[:, None] + _DY
        inside = (tx >= 0) & (tx < g.width) & (ty >= 0) & (ty < g.height)
        target = np.where(inside, ty * g.width + tx, 0)
        ok = inside & g.walkable[target] & (g.outdoors[target] | (world.occupancy[target] == 0))
        if world.weather.is_raining:
            ok &= (~g.outdoors[here] | self.rain_step_due(world, slots))[:, None]
        return ok

    @staticmethod
    def rain_step_due(world: World, slots: np.ndarray) -> np.ndarray:
        """Whether an outdoor step is allowed this tick in rain (the same cadence as walking, see movement)."""
        t = world.tick + slots
        cost = world.weather.rain_cost
        return np.floor((t + 1) / cost) > np.floor(t / cost)

    def _interactions(self, world: World, slot: int, obj: int, row: np.ndarray) -> None:
        o = world.objects
        holder = int(o.reserved_by[obj])
        if (holder >= 0 and holder != slot) or o.user[obj] >= 0 or o.queue[obj]:
            return
        if o.cooldown and o.on_cooldown(slot, obj, world.tick):
            return
        kind = self.place_kind[obj]
        for index in self.affordances_of_type.get(o.types[obj], ()):
            aff = world.manifest.affordances[index]
            if aff.place_kind is not None and aff.place_kind != kind:
                continue
            if aff.failing_precondition(world, slot, obj) is None:
                row[Primitive.INTERACT + index] = True

    def apply(self, world: World, slots: np.ndarray, choices: np.ndarray) -> int:
        """Carry out each agent's primitive (in slot order); return how many were not allowed (and so ignored)."""
        if not len(slots):
            return 0
        masks = self.mask(world, slots)
        invalid = 0
        a = world.agents
        for slot, choice, row in zip(slots.tolist(), choices.tolist(), masks, strict=True):
            if not (0 <= choice < len(row)) or not row[choice]:
                invalid += 1
                continue
            if choice == Primitive.WAIT:
                continue
            if choice < Primitive.INTERACT:
                self._move(world, slot, choice - 1)
                continue
            obj = self._object_for(world, slot, choice - Primitive.INTERACT)
            if obj < 0:  # an agent earlier in slot order took the object this tick
                a.last_success[slot] = False
                continue
            world.cancel_step(slot)
            a.target_obj[slot] = obj
            a.target_aff[slot] = choice - Primitive.INTERACT
            a.requested[slot] = True
            a.step_started[slot] = world.tick
            world.queues.reserve(world, slot, obj)
            actions.start(world, slot)
        return invalid

    def _object_for(self, world: World, slot: int, aff: int) -> int:
        row = np.zeros(primitive_count(world), dtype=bool)
        for obj in self.tile_objects[world.agents.tile[slot]]:
            if obj < 0:
                break
            self._interactions(world, slot, int(obj), row)
            if row[Primitive.INTERACT + aff]:
                return int(obj)
        return -1

    def _move(self, world: World, slot: int, direction: int) -> None:
        a, g = world.agents, world.grid
        here = int(a.tile[slot])
        target = here + int(_DY[direction]) * g.width + int(_DX[direction])
        if not g.outdoors[target] and world.occupancy[target] > 0:
            a.blocked[slot] += 1  # someone stepped in first this tick
            a.last_success[slot] = False
            return
        if a.activity[slot] != Activity.IDLE:
            world.cancel_step(slot)
        world.occupancy[here] -= 1
        world.occupancy[target] += 1
        a.tile[slot] = target
        a.blocked[slot] = 0
        a.last_progress[slot] = world.tick

"""Key targets (shower, fridge, till, home, work): each agent's candidate objects, the nearest by path, and bearings.

Candidates depend on who the agent is (its home and job), so they are rebuilt in Python only for slots whose
home, job or occupant changed since the last encode (a compiled scan finds them). One compiled pass per
encode then reads, for every agent that moved (or got new candidates), the path distance of each candidate
from the precomputed distance fields, keeps the nearest and writes the targets block; in the compact
variant it also writes every agent's path hint.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numba
import numpy as np

from townlet.observations.arrays import AgentArrays, ObjectArrays
from townlet.observations.layout import TARGETS
from townlet.world.fields import FAR, field_dist, field_step
from townlet.world.needs import ENERGY, HUNGER, HYGIENE, SOCIAL

if TYPE_CHECKING:
    from townlet.world.state import World

SHOWER, FRIDGE, TILL, HOME, WORK = range(len(TARGETS))
# Which key target the compact path hint points at when the agent is not walking anywhere, by largest need.
NEED_TARGET = np.zeros(4, dtype=np.int64)
NEED_TARGET[[HUNGER, HYGIENE, ENERGY, SOCIAL]] = [FRIDGE, SHOWER, HOME, HOME]
UNREACHABLE = int(FAR)


class TargetInputs(NamedTuple):
    """What :func:`_write_targets` reads after ``n`` (:meth:`KeyTargets.kernel_args`)."""

    out: np.ndarray  # float32[C, size] the observation buffer
    start: int  # offset of the targets block
    hint_at: int  # offset of the compact path hint (-1: none)
    row_tile: np.ndarray  # int64[C] the tile each row's targets were written for
    width: int  # map width in tiles
    candidates: np.ndarray  # int32[C, T, K] candidate objects (-1 padding)
    fields: np.ndarray  # int32[C, T, K] their distance fields
    paths: tuple  # DistanceFields.arrays: the distance fields (a new tuple when they grow)
    scale: np.float32  # 1 / observations.distance_scale
    nearest_field: np.ndarray  # int32[C, T] out: the field of each row's nearest target (-1: none)
    need_target: np.ndarray  # int64[needs] the target the hint points at, by largest need


class KeyTargets:
    """Per-slot candidate objects for each key target, and the per-encode nearest-target pass.

    Attributes:
        candidates: ``int32[C, T, K]`` candidate objects per slot and target (-1 padding).
        fields: ``int32[C, T, K]`` the distance field of each candidate (0 for padding).
        nearest_field: ``int32[C, T]`` the distance field of each slot's nearest target (-1: none within reach),
            as of the last :meth:`write`.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        o = world.objects
        self.max_public = world.config.observations.max_candidates
        self.distance_scale = np.float32(1.0 / world.config.observations.distance_scale)
        own = 1
        for place in world.homes:
            for t in ("shower", "fridge", "bed"):
                own = max(own, len(o.of_type_in_place(t, place)))
        self.width = own + self.max_public
        cap = world.agents.capacity
        self.candidates = np.full((cap, len(TARGETS), self.width), -1, dtype=np.int32)
        self.fields = np.zeros((cap, len(TARGETS), self.width), dtype=np.int32)
        self.nearest_field = np.full((cap, len(TARGETS)), -1, dtype=np.int32)
        home_kinds = np.array([k == "home" for k in o.place_kinds], dtype=bool)
        showers = o.by_type.get("shower", np.zeros(0, np.int32))
        self.public_showers = showers[~home_kinds[o.place[showers]]]
        self.tills = o.by_type.get("till", np.zeros(0, np.int32))
        self._key = np.full((cap, 3), -2, dtype=np.int64)  # (home, job, spawn tick) the candidates were built for
        self._stale = np.zeros(cap, dtype=np.int64)
        self._row_tile = np.full(cap, -1, dtype=np.int64)  # the tile each row's targets were written for

    def refresh(self) -> bool:
        """Rebuild candidates for living slots whose home, job or occupant changed; return whether any did."""
        a = self.world.agents
        count = _stale_slots(a.alive, a.home, a.job, a.spawn_tick, self._key, self._stale)
        for i in range(count):
            slot = int(self._stale[i])
            self._rebuild(slot)
            self._row_tile[slot] = -1
        return count > 0

    def kernel_args(self, out: np.ndarray, start: int, hint_at: int = -1) -> TargetInputs:
        """The arguments of :func:`_write_targets` after ``n`` (valid until the grid's distance arrays grow).

        The targets block goes at ``start``; with ``hint_at >= 0`` (compact variant) the N/E/S/W path hint is
        written there: the next step toward the agent's destination, or toward the target of its largest need.
        The pass also records :attr:`nearest_field`. Call :meth:`refresh` before each pass.
        """
        w = self.world
        g = w.grid
        return TargetInputs(
            out=out,
            start=start,
            hint_at=hint_at,
            row_tile=self._row_tile,
            width=g.width,
            candidates=self.candidates,
            fields=self.fields,
            paths=g.fields.arrays,
            scale=self.distance_scale,
            nearest_field=self.nearest_field,
            need_target=NEED_TARGET,
        )

    def _rebuild(self, slot: int) -> None:
        w, o = self.world, self.world.objects
        home = int(w.agents.home[slot])
        station = w.employment.station_of(slot)
        hx, hy = self._home_xy(home)
        lists = {
            SHOWER: list(o.of_type_in_place("shower", home)) + self._nearest(self.public_showers, hx, hy),
            FRIDGE: list(o.of_type_in_place("fridge", home)),
            TILL: self._nearest(self.tills, hx, hy),
            HOME: list(o.of_type_in_place("bed", home)),
            WORK: [station] if station >= 0 else [],
        }
        self.candidates[slot] = -1
        self.fields[slot] = 0
        for t, objs in lists.items():
            objs = objs[: self.width]
            self.candidates[slot, t, : len(objs)] = objs
            self.fields[slot, t, : len(objs)] = [o.field_of(int(ob)) for ob in objs]

    def _home_xy(self, home: int) -> tuple[float, float]:
        g = self.world.grid
        tiles = np.flatnonzero(g.place_index == home)
        if not len(tiles):
            return 0.0, 0.0
        return float((tiles % g.width).mean()), float((tiles // g.width).mean())

    def _nearest(self, objs: np.ndarray, x: float, y: float) -> list[int]:
        if len(objs) <= self.max_public:
            return [int(ob) for ob in objs]
        o = self.world.objects
        crow = np.abs(o.x[objs] - x) + np.abs(o.y[objs] - y)
        return [int(ob) for ob in objs[np.argsort(crow, kind="stable")[: self.max_public]]]


@numba.njit(cache=True)
def _stale_slots(alive, home, job, spawn, key, stale):
    """Living slots whose (home, job, spawn tick) differs from ``key`` (updated) go into ``stale``; return how many."""
    count = 0
    for s in range(len(alive)):
        if alive[s] and (key[s, 0] != home[s] or key[s, 1] != job[s] or key[s, 2] != spawn[s]):
            key[s, 0], key[s, 1], key[s, 2] = home[s], job[s], spawn[s]
            stale[count] = s
            count += 1
    return count


@numba.njit(cache=True)
def _write_targets(
    n: int,
    agent_fields: tuple,
    object_fields: tuple,
    own_fields: tuple,
) -> None:
    """Targets block (and path hint) of every living row among ``[0, n)``; rows on an unchanged tile keep theirs."""
    agents, objects, ins = AgentArrays(*agent_fields), ObjectArrays(*object_fields), TargetInputs(*own_fields)
    # Fields bound to locals once: read inside the loops they would be reloaded from memory (no vector copies).
    alive, tiles, dest_field, needs = agents.alive, agents.tile, agents.dest_field, agents.needs
    obj_x, obj_y = objects.x, objects.y
    candidates, width, start, row_tile = ins.candidates, ins.width, ins.start, ins.row_tile
    paths, fields, nearest_field, out = ins.paths, ins.fields, ins.nearest_field, ins.out
    scale, hint_at, need_target = ins.scale, ins.hint_at, ins.need_target
    # Float operations follow the numpy expressions this replaced (float64 bearings), bit for bit.
    targets, k_max = candidates.shape[1], candidates.shape[2]
    for i in range(n):
        if not alive[i]:
            continue
        tile = tiles[i]
        x, y = tile % width, tile // width
        c = start
        # Distances depend only on the tile and the candidates (row_tile is reset when they are rebuilt).
        for t in range(targets if tile != row_tile[i] else 0):
            best_k, best = 0, UNREACHABLE
            for k in range(k_max):  # the first candidate of least distance
                d = field_dist(paths, fields[i, t, k], tile) if candidates[i, t, k] >= 0 else UNREACHABLE
                if d < best:
                    best_k, best = k, d
            obj = candidates[i, t, best_k] if best < UNREACHABLE else -1
            nearest_field[i, t] = fields[i, t, best_k] if obj >= 0 else -1
            out[i, c + 1] = min(np.float32(best) * scale, np.float32(1.0))
            if obj >= 0:
                dx, dy = np.float64(obj_x[obj] - x), np.float64(obj_y[obj] - y)
                norm = max(math.hypot(dx, dy), 1e-9)
                out[i, c] = 1.0
                out[i, c + 2] = dx / norm
                out[i, c + 3] = dy / norm
            else:
                out[i, c] = out[i, c + 2] = out[i, c + 3] = 0.0
            c += 4
        row_tile[i] = tile
        if hint_at >= 0:
            dest = dest_field[i]
            if dest < 0:
                dest = nearest_field[i, need_target[np.argmax(needs[i])]]
            direction = field_step(paths, dest, tile) if dest >= 0 else -1
            for k in range(4):  # direction 1..4 is N/E/S/W; -1 unreachable and 0 "there" read all zeros
                out[i, hint_at + k] = direction == k + 1

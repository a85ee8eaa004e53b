"""Key targets (shower, fridge, till, home, work): each agent's candidate objects, the nearest by path, and bearings.

Candidates depend on who the agent is (its home and job), so they are rebuilt only for slots whose home, job
or occupant changed since the last encode; every tick the distances of all candidates are read from the
precomputed distance fields in one gather (``grid.dist[field, tile]``), and the nearest is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from townlet.observations.layout import TARGETS
from townlet.world.grid import FAR

if TYPE_CHECKING:
    from townlet.world.state import World

SHOWER, FRIDGE, TILL, HOME, WORK = range(len(TARGETS))


class KeyTargets:
    """Per-slot candidate objects for each key target, and the per-tick nearest-target computation.

    Attributes:
        candidates: ``int32[C, T, K]`` candidate objects per slot and target (-1 padding).
        fields: ``int32[C, T, K]`` the distance field of each candidate (0 for padding).
    """

    def __init__(self, world: World) -> None:
        self.world = world
        o = world.objects
        self.max_public = world.config.observations.max_candidates
        own = 1
        for place in world.homes:
            for t in ("shower", "fridge", "bed"):
                own = max(own, len(o.of_type_in_place(t, place)))
        self.width = own + self.max_public
        cap = world.agents.capacity
        self.candidates = np.full((cap, len(TARGETS), self.width), -1, dtype=np.int32)
        self.fields = np.zeros((cap, len(TARGETS), self.width), dtype=np.int32)
        home_kinds = np.array([k == "home" for k in o.place_kinds], dtype=bool)
        showers = o.by_type.get("shower", np.zeros(0, np.int32))
        self.public_showers = showers[~home_kinds[o.place[showers]]]
        self.tills = o.by_type.get("till", np.zeros(0, np.int32))
        self._key = np.full((cap, 3), -2, dtype=np.int64)  # (home, job, spawn tick) the candidates were built for
        self._snapshot = b""
        self._rows = np.arange(cap)
        self._cols = np.arange(len(TARGETS))[None, :]

    def refresh(self, live: np.ndarray) -> bool:
        """Rebuild candidates for living slots whose home, job or occupant changed; return whether any did."""
        a = self.world.agents
        snapshot = a.home.tobytes() + a.job.tobytes() + a.spawn_tick.tobytes() + a.alive.tobytes()
        if snapshot == self._snapshot:
            return False
        self._snapshot = snapshot
        key = np.stack([a.home[live], a.job[live], a.spawn_tick[live]], axis=1)
        changed = (key != self._key[live]).any(axis=1)
        for i in np.flatnonzero(changed):
            self._rebuild(int(live[i]))
        self._key[live[changed]] = key[changed]
        return bool(changed.any())

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

    def nearest(self, n: int, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For slots ``0..n-1`` and each target: ``(object, path distance, field)`` of the nearest candidate.

        Missing or unreachable targets have object -1 and distance ``FAR``.
        """
        cand = self.candidates[:n]
        fields = self.fields[:n]
        grid = self.world.grid
        dist = grid.dist.reshape(-1).take(fields * grid.size + tiles[:, None, None])
        dist[cand < 0] = FAR
        k = dist.argmin(axis=2)
        rows, cols = self._rows[:n, None], self._cols
        best = dist[rows, cols, k]
        obj = cand[rows, cols, k]
        obj[best >= FAR] = -1
        return obj, best, fields[rows, cols, k]

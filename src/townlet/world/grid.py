"""The static map as flat arrays, and distance fields with next-step hints toward any set of goal tiles.

A field is computed once by a multi-source shortest-path search over the walkable tiles (C speed, via
SciPy's csgraph) and cached; moving toward a goal is then a table lookup: ``step[field, tile]`` is the
direction of the next step (0 at the goal, -1 where the goal is unreachable).

Towns built from the same map (a batch of towns, or the next episode of one) also share the computed fields
through a process-wide cache with a memory budget: each grid still numbers its fields in its own request
order (field indices are part of a town's state), only the search is skipped.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from townlet.config.town_map import OUTDOOR_KINDS, TileKind, TownMap

STAY, NORTH, EAST, SOUTH, WEST = 0, 1, 2, 3, 4
UNREACHABLE = -1
FAR = np.uint16(65535)  # distance of unreachable tiles (paths are shorter than this)
SHARED_FIELD_BYTES = 64 << 20  # budget of the process-wide field cache (least recently used go first)


class _SharedFields:
    """Computed ``(dist, step)`` rows by (map fingerprint, goals), least recently used evicted past a budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._rows: OrderedDict[tuple[bytes, tuple[int, ...]], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[bytes, tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray] | None:
        with self._lock:
            rows = self._rows.get(key)
            if rows is not None:
                self._rows.move_to_end(key)
            return rows

    def put(self, key: tuple[bytes, tuple[int, ...]], rows: tuple[np.ndarray, np.ndarray]) -> None:
        with self._lock:
            if key in self._rows:
                return
            self._rows[key] = rows
            self.used += rows[0].nbytes + rows[1].nbytes
            while self.used > self.budget and self._rows:
                _, (dist, step) = self._rows.popitem(last=False)
                self.used -= dist.nbytes + step.nbytes


_SHARED = _SharedFields(SHARED_FIELD_BYTES)


class Grid:
    """Flat views of the town map plus the cache of distance fields.

    Tiles are addressed by a flat index ``y * width + x``.

    Attributes:
        width: Map width in tiles.
        height: Map height in tiles.
        kinds: ``uint8[H*W]`` tile kinds.
        walkable: ``bool[H*W]``.
        outdoors: ``bool[H*W]``; outdoor tiles hold any number of agents, indoor ones hold one.
        offsets: ``int32[5]`` flat-index offset of each direction (STAY, N, E, S, W).
    """

    def __init__(self, town: TownMap) -> None:
        self.width = town.width
        self.height = town.height
        self.size = town.width * town.height
        self.kinds = town.tiles.reshape(-1).astype(np.uint8)
        self.walkable = town.walkable.reshape(-1).copy()
        self.outdoors = np.isin(self.kinds, [int(k) for k in OUTDOOR_KINDS])
        self.place_index = town.place_index.reshape(-1).astype(np.int32)
        self.offsets = np.array([0, -self.width, 1, self.width, -1], dtype=np.int32)
        self.in_the_way = np.zeros(self.size, dtype=bool)
        self._loiter: dict[int, np.ndarray] = {}
        self._graph = self._adjacency()
        shape = np.array([self.width, self.height], dtype=np.int64).tobytes()
        self.fingerprint = hashlib.blake2b(shape + self.walkable.tobytes(), digest_size=16).digest()
        self._fields: dict[tuple[int, ...], int] = {}
        self._dist = np.zeros((0, self.size), dtype=np.uint16)
        self._step = np.zeros((0, self.size), dtype=np.int8)
        self.count = 0

    def mark_in_the_way(self, access: list[tuple[int, ...]]) -> None:
        """Record tiles where an idle agent blocks others: object access tiles, queue nodes and doors."""
        self.in_the_way = np.isin(self.kinds, [int(TileKind.QUEUE), int(TileKind.DOOR)])
        for tiles in access:
            self.in_the_way[list(tiles)] = True
        self._loiter = {}

    def loiter_spots(self, place: int) -> np.ndarray:
        """Walkable tiles of a place that are not in the way (cached per place)."""
        spots = self._loiter.get(place)
        if spots is None:
            # Not in the way, and not next to anything in the way (where people pass to reach it).
            way = self.in_the_way.reshape(self.height, self.width)
            near = way.copy()
            near[1:] |= way[:-1]
            near[:-1] |= way[1:]
            near[:, 1:] |= way[:, :-1]
            near[:, :-1] |= way[:, 1:]
            inside = (self.place_index == place) & self.walkable
            spots = (inside & ~near.reshape(-1)).nonzero()[0].astype(np.int32)
            if not len(spots):  # a small room: settle for not standing in the way itself
                spots = (inside & ~self.in_the_way).nonzero()[0].astype(np.int32)
            self._loiter[place] = spots
        return spots

    def tile(self, x: int, y: int) -> int:
        """Flat index of tile (x, y)."""
        return y * self.width + x

    def xy(self, tile: int) -> tuple[int, int]:
        """(x, y) of a flat tile index."""
        return tile % self.width, tile // self.width

    def _adjacency(self) -> csr_matrix:
        w, n = self.width, self.size
        idx = np.arange(n)
        walk = self.walkable
        right = walk & np.roll(walk, -1) & ((idx % w) != w - 1)
        down = walk & np.roll(walk, -w) & (idx < n - w)
        src = np.concatenate([idx[right], idx[down]])
        dst = np.concatenate([idx[right] + 1, idx[down] + w])
        data = np.ones(len(src), dtype=np.float64)
        return csr_matrix((data, (src, dst)), shape=(n, n))

    def field(self, goals: tuple[int, ...] | list[int]) -> int:
        """Index of the distance field toward the nearest of ``goals`` (flat tiles), computing it once."""
        key = tuple(sorted(set(int(g) for g in goals)))
        found = self._fields.get(key)
        if found is not None:
            return found
        if not key:
            raise ValueError("a distance field needs at least one goal tile")
        rows = _SHARED.get((self.fingerprint, key))
        if rows is None:
            rows = self._search(key)
            _SHARED.put((self.fingerprint, key), rows)
        if self.count == len(self._dist):
            grow = max(16, self.count)
            self._dist = np.concatenate([self._dist, np.zeros((grow, self.size), np.uint16)])
            self._step = np.concatenate([self._step, np.zeros((grow, self.size), np.int8)])
        self._dist[self.count], self._step[self.count] = rows
        self._fields[key] = self.count
        self.count += 1
        return self.count - 1

    def _search(self, goals: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """One multi-source search: ``(uint16 distances, int8 next-step directions)`` toward ``goals``."""
        dist, pred, _ = dijkstra(
            self._graph, directed=False, indices=list(goals), min_only=True, return_predecessors=True
        )
        reach = np.isfinite(dist)
        step = np.full(self.size, UNREACHABLE, dtype=np.int8)
        step[reach] = STAY
        moving = np.nonzero(reach & (pred >= 0))[0]
        delta = pred[moving] - moving
        for direction in (NORTH, EAST, SOUTH, WEST):
            step[moving[delta == self.offsets[direction]]] = direction
        return np.where(reach, np.minimum(dist, FAR - 1), FAR).astype(np.uint16), step

    @property
    def dist(self) -> np.ndarray:
        """``uint16[F, H*W]`` tile distances per field (``FAR`` where unreachable)."""
        return self._dist

    @property
    def step(self) -> np.ndarray:
        """``int8[F, H*W]`` next-step direction per field."""
        return self._step

    def is_kind(self, tile: int, kind: TileKind) -> bool:
        """Whether a flat tile is of a given kind."""
        return int(self.kinds[tile]) == int(kind)

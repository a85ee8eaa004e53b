"""Distance fields: exact next steps toward goal tiles inside a window around them, and a chunk route beyond it.

A field toward a set of goal tiles answers two questions for any tile: how far (``field_dist``) and which way
(``field_step``: 0 at a goal, 1-4 for N/E/S/W, -1 where no path exists). Its memory does not grow with the map:

- **The window.** The field is searched (SciPy csgraph, multi-source) only inside a rectangle: the goals' chunk
  (``town.paths.chunk`` tiles square) grown by ``town.paths.margin`` tiles, clipped to the map. A window tile's
  in-window distance is *certified* exact when no path that leaves the window could be shorter: every such path
  costs at least the Manhattan distance out through the nearest open side and back to a goal. Certified tiles
  keep their distance and next step (uint16 and int8 per tile); the rest are marked ``UNCERTIFIED``. If some tile
  of the goals' own chunk that can reach them is not certified, the margin doubles until it is (at worst the
  window is the whole map, which is then exactly the old whole-map search). A small map is one window.
- **The chunk route.** Beyond its certified tiles, a walker follows the chunk field of the goals' chunk: one
  whole-map breadth-first field per chunk (uint16 distance to the chunk's nearest walkable tile), computed once
  per map. It leads into the chunk, whose tiles are all certified, so the walk always ends at a goal. There the
  distance is an estimate: the route's length to the chunk plus the field's distance at the point where a
  straight approach enters the chunk. Tiles in another walkable component than the goals are unreachable.
- **Sharing.** Window rows are keyed by what decides them (the window's walkable bytes, which sides are open,
  the goals relative to the window), so identical blocks of a tiled town share one copy within a town, and
  towns of one map share searches through a process-wide cache with a memory budget.

In steady state nothing is searched: every object's and queue node's field is built on first use (a window
search, not a whole-map one) and kept. Fields are numbered in request order; the numbers are part of a town's
state (agents' destinations), and :func:`field_dist` / :func:`field_step` read them inside compiled kernels
through :attr:`DistanceFields.arrays`.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numba
import numpy as np
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

STAY, NORTH, EAST, SOUTH, WEST = 0, 1, 2, 3, 4
UNREACHABLE = -1
UNCERTIFIED = -2  # a window tile whose shortest path may leave the window: the chunk route applies
FAR = np.uint16(65535)  # distance of unreachable tiles (paths are shorter than this)
SHARED_FIELD_BYTES = 64 << 20  # budget of the process-wide window-row cache (least recently used go first)
# Columns of DistanceFields' meta table, one row per field.
OFF, X0, Y0, W, H, CHUNK, COMP, GX, GY, CX0, CY0, CX1, CY1 = range(13)
_META = 13

_Key = tuple[Any, ...]


class _SharedRows:
    """Computed ``(dist, step)`` window rows by content key, least recently used evicted past a byte budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._rows: OrderedDict[_Key, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: _Key) -> tuple[np.ndarray, np.ndarray] | None:
        with self._lock:
            rows = self._rows.get(key)
            if rows is not None:
                self._rows.move_to_end(key)
            return rows

    def put(self, key: _Key, rows: tuple[np.ndarray, np.ndarray]) -> None:
        with self._lock:
            if key in self._rows:
                return
            self._rows[key] = rows
            self.used += rows[0].nbytes + rows[1].nbytes
            while self.used > self.budget and self._rows:
                _, (dist, step) = self._rows.popitem(last=False)
                self.used -= dist.nbytes + step.nbytes


_SHARED = _SharedRows(SHARED_FIELD_BYTES)
_ROUTES: OrderedDict[tuple[bytes, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()  # (map, chunk) -> routes
_ROUTES_KEPT = 4
_ROUTES_LOCK = threading.Lock()


class DistanceFields:
    """The fields of one town's map, numbered in request order.

    Args:
        width: Map width in tiles.
        height: Map height in tiles.
        walkable: ``bool[H*W]`` walkable tiles.
        chunk: Side of a route chunk in tiles (doubled until the chunk fields fit ``route_budget``).
        margin: Tiles a window extends beyond its chunk.
        route_budget: Bytes the chunk fields may take (uint16 per tile per chunk).

    Attributes:
        count: Fields built so far.
        arrays: The tuple compiled kernels read (``field_dist(arrays, f, tile)``); replaced when storage grows.
        searches: Window searches this town ran (a cached or shared row costs none).
    """

    def __init__(
        self, width: int, height: int, walkable: np.ndarray, chunk: int, margin: int, route_budget: int
    ) -> None:
        self.width, self.height, self.size = width, height, width * height
        self.walkable = walkable
        self.margin = margin
        while chunk < max(width, height) and _chunks(width, height, chunk) * self.size * 2 > route_budget:
            chunk *= 2
        self.chunk = chunk
        shape = np.array([width, height], dtype=np.int64).tobytes()
        self.fingerprint = hashlib.blake2b(shape + walkable.tobytes(), digest_size=16).digest()
        self._index: dict[tuple[int, ...], int] = {}
        self._content: dict[_Key, int] = {}  # window-row key -> offset in the pool
        self._meta = np.zeros((16, _META), dtype=np.int64)
        self._dist = np.zeros(0, dtype=np.uint16)
        self._step = np.zeros(0, dtype=np.int8)
        self._used = 0
        self._comp = np.zeros(0, dtype=np.int32)
        self._route = np.zeros((0, 0), dtype=np.uint16)
        self.count = 0
        self.searches = 0
        self.arrays = self._pack()

    # -- building -----------------------------------------------------------------------------------

    def field(self, goals: tuple[int, ...] | list[int]) -> int:
        """Index of the field toward the nearest of ``goals`` (flat tiles), building it on first request."""
        key = tuple(sorted({int(g) for g in goals}))
        found = self._index.get(key)
        if found is not None:
            return found
        if not key:
            raise ValueError("a distance field needs at least one goal tile")
        if any(not 0 <= g < self.size for g in key):
            raise ValueError("a goal tile lies outside the map")
        row = self._place(key)
        if self.count == len(self._meta):
            self._meta = np.concatenate([self._meta, np.zeros_like(self._meta)])
        self._meta[self.count] = row
        self._index[key] = self.count
        self.count += 1
        if any(a is not b for a, b in zip(self.arrays, self._pack()[:5], strict=False)):
            self.arrays = self._pack()  # storage moved: kernels must be handed the new arrays
        return self.count - 1

    def goal_sets(self) -> list[tuple[int, ...]]:
        """Every field's goal tiles, in field order (snapshots rebuild them in this order)."""
        return [goals for goals, _ in sorted(self._index.items(), key=lambda kv: kv[1])]

    def clear(self) -> None:
        """Forget every field's number (their rows stay pooled for reuse)."""
        self._index = {}
        self.count = 0

    def nbytes(self) -> dict[str, int]:
        """Bytes held: ``windows`` (the pooled window rows), ``routes`` (chunk fields and components), ``meta``."""
        return {
            "windows": int(self._used * 3),
            "routes": int(self._route.nbytes + self._comp.nbytes),
            "meta": int(self.count * _META * 8),
        }

    def _pack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        return (self._meta, self._dist, self._step, self._route, self._comp, self.width)

    def _place(self, goals: tuple[int, ...]) -> np.ndarray:
        """The meta row of a new field: its window rows (searched or shared), chunk and component."""
        row = np.full(_META, -1, dtype=np.int64)
        gx, gy = goals[0] % self.width, goals[0] // self.width
        row[GX], row[GY] = gx, gy
        whole = (0, 0, self.width, self.height)
        c = self.chunk
        cx, cy = gx // c, gy // c
        chunk_rect = (cx * c, cy * c, min((cx + 1) * c, self.width), min((cy + 1) * c, self.height))
        if self._window(chunk_rect, goals, self.margin) == whole:
            row[OFF], (row[X0], row[Y0], row[W], row[H]) = self._rows(whole, goals), whole
            return row
        comp, route = self._routes()
        comps = set(comp[list(goals)].tolist())
        if len(comps) != 1 or -1 in comps:  # goals in several components (or on walls): one exact window
            row[OFF], (row[X0], row[Y0], row[W], row[H]) = self._rows(whole, goals), whole
            return row
        row[COMP] = comps.pop()
        row[CHUNK] = cy * _chunks_x(self.width, c) + cx
        row[CX0], row[CY0], row[CX1], row[CY1] = chunk_rect
        margin = self.margin
        while True:
            rect = self._window(chunk_rect, goals, margin)
            off = self._rows(rect, goals)
            if rect == whole or self._covers(off, rect, chunk_rect, int(row[COMP])):
                row[OFF], (row[X0], row[Y0], row[W], row[H]) = off, rect
                if rect == whole:
                    row[CHUNK] = row[COMP] = -1
                return row
            margin *= 2

    def _window(
        self, chunk_rect: tuple[int, int, int, int], goals: tuple[int, ...], margin: int
    ) -> tuple[int, int, int, int]:
        """``(x0, y0, w, h)``: the chunk and the goals' bounding box, grown by ``margin``, clipped to the map."""
        xs = [g % self.width for g in goals]
        ys = [g // self.width for g in goals]
        x0 = max(min(chunk_rect[0], *xs) - margin, 0)
        y0 = max(min(chunk_rect[1], *ys) - margin, 0)
        x1 = min(max(chunk_rect[2], *(x + 1 for x in xs)) + margin, self.width)
        y1 = min(max(chunk_rect[3], *(y + 1 for y in ys)) + margin, self.height)
        return x0, y0, x1 - x0, y1 - y0

    def _covers(
        self, off: int, rect: tuple[int, int, int, int], chunk_rect: tuple[int, int, int, int], comp: int
    ) -> bool:
        """Whether every tile of the chunk in the goals' component is certified (the route can hand over)."""
        x0, y0, w, h = rect
        cx0, cy0, cx1, cy1 = chunk_rect
        steps = self._step[off : off + w * h].reshape(h, w)[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        mine = self._comp.reshape(self.height, self.width)[cy0:cy1, cx0:cx1] == comp
        return not (steps[mine] == UNCERTIFIED).any()

    def _rows(self, rect: tuple[int, int, int, int], goals: tuple[int, ...]) -> int:
        """Offset of the window rows for ``goals`` in the pool: shared, cached process-wide, or searched."""
        x0, y0, w, h = rect
        sub = self.walkable.reshape(self.height, self.width)[y0 : y0 + h, x0 : x0 + w]
        sides = (x0 > 0, y0 > 0, x0 + w < self.width, y0 + h < self.height)  # open to the outside: W, N, E, S
        rel = tuple((g // self.width - y0) * w + (g % self.width - x0) for g in goals)
        key = (hashlib.blake2b(np.ascontiguousarray(sub).tobytes(), digest_size=16).digest(), w, h, sides, rel)
        off = self._content.get(key)
        if off is not None:
            return off
        rows = _SHARED.get(key)
        if rows is None:
            rows = _search(sub, rel, sides)
            self.searches += 1
            _SHARED.put(key, rows)
        off = self._used
        if off + w * h > len(self._dist):
            grow = max(off + w * h, 2 * len(self._dist))
            self._dist = np.concatenate([self._dist, np.full(grow - len(self._dist), FAR, np.uint16)])
            self._step = np.concatenate([self._step, np.full(grow - len(self._step), UNREACHABLE, np.int8)])
        self._dist[off : off + w * h], self._step[off : off + w * h] = rows
        self._used += w * h
        self._content[key] = off
        return off

    def _routes(self) -> tuple[np.ndarray, np.ndarray]:
        """Components and chunk fields of this map (built once, shared by towns of the same map)."""
        if len(self._comp):
            return self._comp, self._route
        key = (self.fingerprint, self.chunk)
        with _ROUTES_LOCK:
            found = _ROUTES.get(key)
            if found is not None:
                _ROUTES.move_to_end(key)
        if found is None:
            labels, _ = ndimage.label(self.walkable.reshape(self.height, self.width))
            comp = (labels.reshape(-1) - 1).astype(np.int32)
            route = _chunk_fields(self.walkable, self.width, self.height, self.chunk)
            route.flags.writeable = comp.flags.writeable = False
            found = comp, route
            with _ROUTES_LOCK:
                _ROUTES[key] = found
                while len(_ROUTES) > _ROUTES_KEPT:
                    _ROUTES.popitem(last=False)
        self._comp, self._route = found
        self.arrays = self._pack()
        return found

    # -- reading (Python side; kernels call field_dist / field_step) ---------------------------------

    def dist_at(self, f: int, tile: int) -> int:
        """Walking distance from ``tile`` toward field ``f`` (``FAR`` when unreachable)."""
        return int(field_dist(self.arrays, f, tile))

    def step_at(self, f: int, tile: int) -> int:
        """Next-step direction from ``tile`` along field ``f`` (0 at a goal, -1 when unreachable)."""
        return int(field_step(self.arrays, f, tile))

    def dist_many(self, fields: np.ndarray, tiles: np.ndarray) -> np.ndarray:
        """``int64`` :meth:`dist_at` over ``fields`` and ``tiles`` broadcast together (their broadcast shape)."""
        f, t = np.broadcast_arrays(np.asarray(fields, dtype=np.int64), np.asarray(tiles, dtype=np.int64))
        return _many(self.arrays, f.ravel(), t.ravel(), False).reshape(f.shape)

    def step_many(self, fields: np.ndarray, tiles: np.ndarray) -> np.ndarray:
        """``int64`` :meth:`step_at` over ``fields`` and ``tiles`` broadcast together (their broadcast shape)."""
        f, t = np.broadcast_arrays(np.asarray(fields, dtype=np.int64), np.asarray(tiles, dtype=np.int64))
        return _many(self.arrays, f.ravel(), t.ravel(), True).reshape(f.shape)

    def dist_row(self, f: int) -> np.ndarray:
        """``uint16[H*W]`` field ``f``'s distance at every tile (a full-map copy: for tests and small maps)."""
        return _rows_of(self.arrays, f, self.size)[0]

    def step_row(self, f: int) -> np.ndarray:
        """``int8[H*W]`` field ``f``'s next step at every tile (a full-map copy: for tests and small maps)."""
        return _rows_of(self.arrays, f, self.size)[1]


def _chunks_x(width: int, chunk: int) -> int:
    return -(-width // chunk)


def _chunks(width: int, height: int, chunk: int) -> int:
    return _chunks_x(width, chunk) * _chunks_x(height, chunk)


def adjacency(walkable: np.ndarray, width: int) -> csr_matrix:
    """The undirected unit-weight graph of 4-neighbouring walkable tiles (flat indices, ``width`` per row)."""
    n = len(walkable)
    idx = np.arange(n)
    right = walkable & np.roll(walkable, -1) & ((idx % width) != width - 1)
    down = walkable & np.roll(walkable, -width) & (idx < n - width)
    src = np.concatenate([idx[right], idx[down]])
    dst = np.concatenate([idx[right] + 1, idx[down] + width])
    data = np.ones(len(src), dtype=np.float64)
    return csr_matrix((data, (src, dst)), shape=(n, n))


def _search(
    sub: np.ndarray, goals: tuple[int, ...], sides: tuple[bool, bool, bool, bool]
) -> tuple[np.ndarray, np.ndarray]:
    """One window's ``(uint16 distances, int8 next steps)`` toward ``goals`` (window-flat), certified.

    With no open side the window is the whole map: one multi-source Dijkstra (SciPy), every reachable tile
    exact. Otherwise a breadth-first search inside the window (the next step is toward the tile that reached
    this one first), and a tile is kept only when its in-window distance is at most the cheapest path out
    through an open side and back to a goal (Manhattan both ways); the others read ``FAR`` / ``UNCERTIFIED``.
    """
    h, w = sub.shape
    flat = sub.reshape(-1)
    if any(sides):
        return _window_search(flat, w, h, np.array(goals, dtype=np.int64), np.array(sides, dtype=np.bool_))
    dist, pred, _ = dijkstra(
        adjacency(flat, w), directed=False, indices=list(goals), min_only=True, return_predecessors=True
    )
    reach = np.isfinite(dist)
    step = np.full(len(flat), UNREACHABLE, dtype=np.int8)
    step[reach] = STAY
    moving = np.nonzero(reach & (pred >= 0))[0]
    delta = pred[moving] - moving
    offsets = (0, -w, 1, w, -1)
    for direction in (NORTH, EAST, SOUTH, WEST):
        step[moving[delta == offsets[direction]]] = direction
    return np.where(reach, np.minimum(dist, FAR - 1), FAR).astype(np.uint16), step


@numba.njit(cache=True)
def _window_search(  # noqa: C901
    walkable: np.ndarray, w: int, h: int, goals: np.ndarray, sides: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Breadth-first ``(dist, step)`` inside a ``w``×``h`` window, certified against leaving by an open side.

    ``sides`` says which of the window's W, N, E, S sides open onto more map.
    """
    n = w * h
    dist = np.full(n, FAR, dtype=np.uint16)
    step = np.full(n, UNCERTIFIED, dtype=np.int8)
    queue = np.empty(n, dtype=np.int64)
    head = tail = 0
    for g in goals:
        if dist[g] == FAR:
            dist[g] = 0
            step[g] = STAY
            queue[tail] = g
            tail += 1
    while head < tail:
        t = queue[head]
        head += 1
        x, y = t % w, t // w
        for k in range(4):  # the neighbour n steps back toward t: N of t steps SOUTH, and so on
            if k == 0:
                if y == 0:
                    continue
                nb, back = t - w, SOUTH
            elif k == 1:
                if x == w - 1:
                    continue
                nb, back = t + 1, WEST
            elif k == 2:
                if y == h - 1:
                    continue
                nb, back = t + w, NORTH
            else:
                if x == 0:
                    continue
                nb, back = t - 1, EAST
            if walkable[nb] and dist[nb] == FAR:
                dist[nb] = dist[t] + 1
                step[nb] = back
                queue[tail] = nb
                tail += 1
    for t in range(n):
        if dist[t] == FAR:
            continue
        tx, ty = t % w, t // w
        bound = 1 << 62
        for g in goals:
            gx, gy = g % w, g // w
            across, along = abs(ty - gy), abs(tx - gx)
            if sides[0]:
                bound = min(bound, tx + gx + 2 + across)
            if sides[1]:
                bound = min(bound, ty + gy + 2 + along)
            if sides[2]:
                bound = min(bound, (w - tx) + (w - gx) + across)
            if sides[3]:
                bound = min(bound, (h - ty) + (h - gy) + along)
        if dist[t] > bound:
            dist[t] = FAR
            step[t] = UNCERTIFIED
    return dist, step


@numba.njit(cache=True)
def _chunk_fields(walkable: np.ndarray, width: int, height: int, chunk: int) -> np.ndarray:  # noqa: C901
    """``uint16[chunks, H*W]``: breadth-first distance to each chunk's nearest walkable tile (``FAR``: none)."""
    nx, ny = (width + chunk - 1) // chunk, (height + chunk - 1) // chunk
    size = width * height
    out = np.full((nx * ny, size), FAR, dtype=np.uint16)
    queue = np.empty(size, dtype=np.int64)
    for cy in range(ny):
        for cx in range(nx):
            row = out[cy * nx + cx]
            head = tail = 0
            for y in range(cy * chunk, min((cy + 1) * chunk, height)):
                for x in range(cx * chunk, min((cx + 1) * chunk, width)):
                    t = y * width + x
                    if walkable[t]:
                        row[t] = 0
                        queue[tail] = t
                        tail += 1
            while head < tail:
                t = queue[head]
                head += 1
                d = row[t] + 1
                x, y = t % width, t // width
                for k in range(4):
                    if k == 0:
                        if y == 0:
                            continue
                        n = t - width
                    elif k == 1:
                        if x == width - 1:
                            continue
                        n = t + 1
                    elif k == 2:
                        if y == height - 1:
                            continue
                        n = t + width
                    else:
                        if x == 0:
                            continue
                        n = t - 1
                    if walkable[n] and row[n] == FAR:
                        row[n] = d
                        queue[tail] = n
                        tail += 1
    return out


@numba.njit(cache=True)
def _window_index(meta: np.ndarray, f: int, x: int, y: int) -> int:
    """Pool index of ``(x, y)`` in field ``f``'s window, -1 outside it."""
    dx, dy = x - meta[f, X0], y - meta[f, Y0]
    if dx < 0 or dy < 0 or dx >= meta[f, W] or dy >= meta[f, H]:
        return -1
    return meta[f, OFF] + dy * meta[f, W] + dx


@numba.njit(cache=True)
def _certified(meta: np.ndarray, step: np.ndarray, f: int, x: int, y: int) -> int:
    """The window index of tile ``(x, y)`` in field ``f`` when its distance is certified exact, else -1."""
    i = _window_index(meta, f, x, y)
    return i if i >= 0 and step[i] != UNCERTIFIED else -1


@numba.njit(cache=True)
def _locate(arrays: tuple, f: int, tile: int) -> tuple[int, int]:
    """Where ``tile`` stands in field ``f``: ``(i, c)``.

    ``i`` is its certified window index (-1: not certified); ``c`` the chunk whose route leads toward the goals
    (-1: none, or ``tile`` is in another component), which only matters when ``i`` is -1.
    """
    meta, _, step, _, comp, width = arrays
    i = _certified(meta, step, f, tile % width, tile // width)
    c = meta[f, CHUNK]
    return i, (c if c >= 0 and comp[tile] == meta[f, COMP] else -1)


@numba.njit(cache=True)
def field_dist(arrays: tuple, f: int, tile: int) -> int:
    """Walking distance from ``tile`` toward field ``f`` of :attr:`DistanceFields.arrays` (``FAR``: none).

    Exact on the field's certified window tiles; beyond them the chunk route's length into the goals' chunk
    plus the field's distance where a straight approach enters it.
    """
    meta, dist, step, route, _, width = arrays
    i, c = _locate(arrays, f, tile)
    if i >= 0:
        return int(dist[i])
    if c < 0 or route[c, tile] == FAR:
        return int(FAR)
    x, y = tile % width, tile // width
    px = min(max(x, meta[f, CX0]), meta[f, CX1] - 1)
    py = min(max(y, meta[f, CY0]), meta[f, CY1] - 1)
    j = _certified(meta, step, f, px, py)
    entry = dist[j] if j >= 0 else abs(px - meta[f, GX]) + abs(py - meta[f, GY])
    return min(int(route[c, tile]) + int(entry), int(FAR) - 1)


@numba.njit(cache=True)
def field_step(arrays: tuple, f: int, tile: int) -> int:
    """Next-step direction from ``tile`` along field ``f`` (0 at a goal, 1-4 N/E/S/W, -1 no path).

    On certified window tiles the exact shortest path's step; beyond them the first of N, E, S, W one step
    nearer the goals' chunk.
    """
    _, _, step, route, comp, width = arrays
    i, c = _locate(arrays, f, tile)
    if i >= 0:
        return int(step[i])
    if c < 0:
        return UNREACHABLE
    x, y = tile % width, tile // width
    d = route[c, tile]
    if d == 0 or d == FAR:
        return UNREACHABLE
    height = len(comp) // width
    if y > 0 and route[c, tile - width] == d - 1:
        return NORTH
    if x < width - 1 and route[c, tile + 1] == d - 1:
        return EAST
    if y < height - 1 and route[c, tile + width] == d - 1:
        return SOUTH
    if x > 0 and route[c, tile - 1] == d - 1:
        return WEST
    return UNREACHABLE


@numba.njit(cache=True)
def _many(arrays: tuple, fields: np.ndarray, tiles: np.ndarray, steps: bool) -> np.ndarray:
    out = np.empty(len(fields), dtype=np.int64)
    for i in range(len(fields)):
        out[i] = field_step(arrays, fields[i], tiles[i]) if steps else field_dist(arrays, fields[i], tiles[i])
    return out


@numba.njit(cache=True)
def _rows_of(arrays: tuple, f: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    dist = np.empty(size, dtype=np.uint16)
    step = np.empty(size, dtype=np.int8)
    for t in range(size):
        dist[t] = field_dist(arrays, f, t)
        step[t] = field_step(arrays, f, t)
    return dist, step

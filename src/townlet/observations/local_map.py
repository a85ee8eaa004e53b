"""Egocentric map windows cut from a padded, tile-major channel array, and the per-agent path-hint planes.

The town's channels live in ``float32[(H + 2p) * (W + 2p), C]`` (padding marked ``blocked``), so each row of
an agent's ``window × window`` patch is one contiguous run of ``window * C`` floats: no bounds checks. Static
channels (walls, doors, outdoors, queue nodes, object types) are written once; one compiled pass per encode
refreshes the dynamic ones (agents, busy objects, queue lengths), stamping the cells whose value changed,
then writes every living agent's window: whole when the agent moved (or is new), else only its stamped
cells. Hint planes (closeness of each window cell to the agent's own key targets, read from the distance
fields through a lookup table) are rewritten only for agents whose tile or targets changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numba
import numpy as np

from townlet.config.town_map import TileKind
from townlet.observations.arrays import AgentArrays, ObjectArrays
from townlet.world.fields import FAR, field_dist

if TYPE_CHECKING:
    from townlet.world.state import World


class WindowInputs(NamedTuple):
    """What :func:`_write_windows` reads after ``n`` (:meth:`MapWindow.kernel_args`)."""

    out: np.ndarray  # float32[C, size] the observation buffer
    start: int  # offset of the map block
    hint_at: int  # offset of the hint planes (-1: none)
    fresh: np.ndarray  # bool[C] rows written whole (new agents)
    occupancy: np.ndarray  # agents per tile
    queue_length: np.ndarray  # int32[objects] agents queued per object
    flat: np.ndarray  # float32 the padded channel array, flat
    channels: int  # channels per cell
    pad_index: np.ndarray  # int64[tiles] flat tile -> padded index
    object_pad: np.ndarray  # padded index of each object
    offsets: np.ndarray  # int64[window²] padded offset of each window cell from its centre
    window: int  # window side in cells
    dynamic: np.ndarray  # int64[3] columns of the agents / busy / queue_length channels (-1: none)
    crowd: np.float32  # 1 / observations.crowd_scale
    queue_scale: np.float32  # 1 / observations.queue_scale
    occupied: np.ndarray  # int64 [count, tiles holding agents at the last encode...]
    stamp: np.ndarray  # int64 per padded cell: the pass that last changed it
    encode_count: np.ndarray  # int64[1] passes so far
    row_tile: np.ndarray  # int64[C] the tile each row's window was written for
    row_fields: np.ndarray  # int32[C, T] the fields each row's hint planes were written for
    fields: np.ndarray  # int32[C, T] each row's target fields now (KeyTargets.nearest_field)
    paths: tuple  # DistanceFields.arrays: the distance fields (a new tuple when they grow)
    unpad: np.ndarray  # int64 padded index -> flat tile (-1 outside the map)
    closeness: np.ndarray  # float32 path distance -> closeness in [0, 1]


class MapWindow:
    """Writes ``window × window × C`` patches around agents (row-major: row, column, channel), and hint planes.

    Args:
        world: The town.
        channels: Channel names in output order (see ``townlet.observations.layout``).
        hints: Number of hint planes per agent (0: none).
    """

    def __init__(self, world: World, channels: tuple[str, ...], hints: int = 0) -> None:
        cfg = world.config.observations
        g, o = world.grid, world.objects
        self.world = world
        self.window = w = cfg.window
        self.half = w // 2
        self.pad = p = w
        self.padded_width = pw = g.width + 2 * p
        self.channels = channels
        self.crowd = np.float32(1.0 / cfg.crowd_scale)
        self.queue_scale = np.float32(1.0 / cfg.queue_scale)
        ys, xs = np.divmod(np.arange(g.size), g.width)
        self.pad_index = ((ys + p) * pw + xs + p).astype(np.int64)  # flat tile -> padded flat index
        self.array = np.zeros(((g.height + 2 * p) * pw, len(channels)), dtype=np.float32)
        col = {name: i for i, name in enumerate(channels)}
        self.col = col
        if "blocked" in col:
            self.array[:, col["blocked"]] = 1.0
            self.array[self.pad_index, col["blocked"]] = (~g.walkable).astype(np.float32)
        for name, kind in (("door", TileKind.DOOR), ("queue_node", TileKind.QUEUE)):
            if name in col:
                self.array[self.pad_index, col[name]] = g.kinds == int(kind)
        if "outdoors" in col:
            self.array[self.pad_index, col["outdoors"]] = g.outdoors
        self.object_pad = self.pad_index[o.tile]
        for t in o.type_names:
            if f"object.{t}" in col:
                self.array[self.object_pad[o.by_type[t]], col[f"object.{t}"]] = 1.0
        dy, dx = np.divmod(np.arange(w * w), w)
        self.offsets = ((dy - self.half) * pw + (dx - self.half)).astype(np.int64)
        # Dynamic channel columns (-1: not in this variant).
        self.dynamic = np.array([col.get(name, -1) for name in ("agents", "busy", "queue_length")], dtype=np.int64)
        # Padded index -> flat map tile (-1 outside the map).
        self.unpad = np.full(len(self.array), -1, dtype=np.int64)
        self.unpad[self.pad_index] = np.arange(g.size)
        # Path distance -> closeness in [0, 1] (0 for unreachable ``FAR``): a lookup instead of arithmetic.
        close = 1.0 - np.minimum(np.arange(int(FAR) + 1) * np.float32(1.0 / cfg.distance_scale), 1.0)
        close[int(FAR)] = 0.0
        self.closeness = close.astype(np.float32)
        self._flat = self.array.reshape(-1)  # the same memory, as the kernel reads it
        cap = world.agents.capacity
        self._stamp = np.zeros(len(self.array), dtype=np.int64)  # encode count at which a cell last changed
        self._encodes = np.zeros(1, dtype=np.int64)  # passes so far (the kernel counts)
        self._occupied = np.zeros(2 * cap + 1, dtype=np.int64)  # [count, tiles holding agents at the last encode...]
        self._row_tile = np.full(cap, -1, dtype=np.int64)  # the tile each row's window was written for
        self._row_fields = np.full((cap, max(hints, 1)), -1, dtype=np.int32)  # ... and its hint planes' fields

    def kernel_args(
        self,
        out: np.ndarray,
        start: int,
        fresh: np.ndarray,
        queue_length: np.ndarray,
        hint_at: int = -1,
        fields: np.ndarray | None = None,
    ) -> WindowInputs:
        """The arguments of :func:`_write_windows` after ``n`` (valid until the grid's distance arrays grow).

        Args:
            out: The slot-indexed buffer; windows go at ``start`` (``window² × C`` floats per row).
            start: Offset of the map block.
            fresh: ``bool[capacity]`` rows whose agent is new since the last encode (written whole).
            queue_length: ``int32[objects]`` agents queued per object, for the ``queue_length`` channel.
            hint_at: Offset of the hint planes (``T × window²`` floats per row), -1 for none.
            fields: ``int32[capacity, T]`` the distance field of each row's targets (-1 none), for the hints.
        """
        w = self.world
        g = w.grid
        if fields is None:
            fields = self._row_fields
        return WindowInputs(
            out=out,
            start=start,
            hint_at=hint_at,
            fresh=fresh,
            occupancy=w.occupancy,
            queue_length=queue_length,
            flat=self._flat,
            channels=self.array.shape[1],
            pad_index=self.pad_index,
            object_pad=self.object_pad,
            offsets=self.offsets,
            window=self.window,
            dynamic=self.dynamic,
            crowd=self.crowd,
            queue_scale=self.queue_scale,
            occupied=self._occupied,
            stamp=self._stamp,
            encode_count=self._encodes,
            row_tile=self._row_tile,
            row_fields=self._row_fields,
            fields=fields,
            paths=g.fields.arrays,
            unpad=self.unpad,
            closeness=self.closeness,
        )


@numba.njit(cache=True)
def _write_windows(  # noqa: C901
    n: int,
    agent_fields: tuple,
    object_fields: tuple,
    own_fields: tuple,
) -> None:
    """Refresh the dynamic channels (stamping changed cells), then write the living rows' windows and hints.

    ``encode_count`` (``int64[1]``) counts the passes; a cell's stamp is the pass that last changed it.
    """
    agents, objects, ins = AgentArrays(*agent_fields), ObjectArrays(*object_fields), WindowInputs(*own_fields)
    alive, tiles = agents.alive, agents.tile
    reserved_by, user = objects.reserved_by, objects.user
    encode_count, dynamic, occupied, occupancy = ins.encode_count, ins.dynamic, ins.occupied, ins.occupancy
    crowd, pad_index, channels, flat = ins.crowd, ins.pad_index, ins.channels, ins.flat
    stamp, object_pad, queue_length, queue_scale = ins.stamp, ins.object_pad, ins.queue_length, ins.queue_scale
    window, start, fresh, row_tile = ins.window, ins.start, ins.fresh, ins.row_tile
    out, offsets, hint_at, fields = ins.out, ins.offsets, ins.hint_at, ins.fields
    row_fields, unpad, closeness, paths = ins.row_fields, ins.unpad, ins.closeness, ins.paths
    encode_count[0] += 1
    encodes = encode_count[0]
    # Values follow the numpy expressions this replaced (float32 products), bit for bit.
    one, zero = np.float32(1.0), np.float32(0.0)
    crowded, busy, queued = dynamic[0], dynamic[1], dynamic[2]  # channel columns (-1: none)
    if crowded >= 0:  # tiles that held agents at the last encode, and those holding them now
        before = count = occupied[0]
        for i in range(n):
            if alive[i]:
                occupied[1 + count] = tiles[i]
                count += 1
        for k in range(count):
            t = occupied[1 + k]
            value = min(np.float32(occupancy[t]) * crowd, one)
            at = pad_index[t] * channels + crowded
            if flat[at] != value:
                flat[at] = value
                stamp[pad_index[t]] = encodes
        occupied[0] = count - before
        for k in range(count - before):
            occupied[1 + k] = occupied[1 + before + k]
    if busy >= 0:
        for ob in range(len(object_pad)):
            value = one if reserved_by[ob] >= 0 or user[ob] >= 0 else zero
            at = object_pad[ob] * channels + busy
            if flat[at] != value:
                flat[at] = value
                stamp[object_pad[ob]] = encodes
    if queued >= 0:
        for ob in range(len(object_pad)):
            value = min(np.float32(queue_length[ob]) * queue_scale, one)
            at = object_pad[ob] * channels + queued
            if flat[at] != value:
                flat[at] = value
                stamp[object_pad[ob]] = encodes
    cells = window * window
    span = window * channels
    centre = start + (cells // 2) * channels
    for i in range(n):
        if not alive[i]:
            continue
        t = tiles[i]
        p = pad_index[t]
        moved = fresh[i] or row_tile[i] != t
        row_tile[i] = t
        row = out[i]
        # (Unsigned indices: no negative-index wraparound, so the copies compile to vector moves.)
        if moved:  # the whole window, one contiguous run of padded cells per window row
            for r in range(window):
                at, to = np.uint64((p + offsets[r * window]) * channels), np.uint64(start + r * span)
                for k in range(np.uint64(span)):
                    row[to + k] = flat[at + k]
        else:  # only the cells whose dynamic channels changed since the last encode
            for c in range(cells):
                q = p + offsets[c]
                if stamp[q] == encodes:
                    at, to = np.uint64(q * channels), np.uint64(start + c * channels)
                    for k in range(np.uint64(channels)):
                        row[to + k] = flat[at + k]
        if crowded >= 0:  # the agent itself does not count
            row[centre + crowded] = min(np.float32(occupancy[t] - 1) * crowd, one)
        if hint_at < 0:
            continue
        for k in range(fields.shape[1]):
            if fields[i, k] != row_fields[i, k]:
                row_fields[i, k] = fields[i, k]
                moved = True
        if not moved:
            continue
        for k in range(fields.shape[1]):
            f = fields[i, k]
            dst = hint_at + k * cells
            for c in range(cells):
                cell = unpad[p + offsets[c]]
                out[i, dst + c] = closeness[field_dist(paths, f, cell)] if f >= 0 and cell >= 0 else zero

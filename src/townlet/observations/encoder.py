"""``ObservationEncoder``: writes every living agent's float32 observation into one preallocated buffer.

Blocks are computed for all agents at once into a scratch array (one row per living agent) and copied into
the slot-indexed buffer in a single assignment; rows of empty slots are zero. See docs/observations.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from townlet.observations.common import CommonBlock
from townlet.observations.layout import TARGETS, FeatureLayout, layout_of
from townlet.observations.local_map import MapWindow
from townlet.observations.targets import FRIDGE, HOME, SHOWER, KeyTargets
from townlet.world.needs import ENERGY, HUNGER, HYGIENE, SOCIAL

if TYPE_CHECKING:
    from townlet.world.state import World

# Which key target the compact path hint points at when the agent is not walking anywhere, by largest need.
NEED_TARGET = np.zeros(4, dtype=np.int64)
NEED_TARGET[[HUNGER, HYGIENE, ENERGY, SOCIAL]] = [FRIDGE, SHOWER, HOME, HOME]
# Next-step direction (-1 unreachable, 0 stay, 1..4 N/E/S/W) + 1 -> 4-value one-hot row.
HINT_ROWS = np.vstack([np.zeros((2, 4)), np.eye(4)]).astype(np.float32)


class ObservationEncoder:
    """The observation encoder of one town for one variant.

    Args:
        world: The town (read only).
        variant: ``full``, ``hybrid`` or ``compact``; ``features.observations`` when None.
        out: Optional ``float32[capacity, size]`` buffer to write into (e.g. one town's rows of a batch).

    Attributes:
        layout: Feature names and index ranges.
        size: Observation length.
        buffer: ``float32[capacity, size]``, rows indexed by slot.
    """

    def __init__(self, world: World, variant: str | None = None, out: np.ndarray | None = None) -> None:
        self.world = world
        self.layout: FeatureLayout = layout_of(world, variant)
        self.variant = self.layout.variant
        self.size = self.layout.size
        cap = world.agents.capacity
        if out is None:
            out = np.zeros((cap, self.size), dtype=np.float32)
        if out.shape != (cap, self.size) or out.dtype != np.float32:
            raise ValueError(f"out must be float32[{cap}, {self.size}], got {out.dtype}{list(out.shape)}")
        self.buffer = out
        self.common = CommonBlock(world, self.layout)
        self.targets = KeyTargets(world)
        self.t_start, self.t_stop = self.layout.blocks["targets"]
        self.distance_scale = np.float32(1.0 / world.config.observations.distance_scale)
        self.map = MapWindow(world, self.layout.channels) if self.layout.window else None
        self.m_start, self.m_stop = self.layout.blocks.get("map", (0, 0))
        self.hint_start, self.hint_stop = self.layout.blocks.get("hints", (0, 0))
        self.cells = self.layout.window**2
        self.h_start = self.layout.blocks.get("path_hint", (0, 0))[0]
        self._rows = np.arange(cap)
        self._alive = np.zeros(cap, dtype=bool)
        self._alive_bytes = b""
        self._tiles = b""
        self._fields = np.zeros((0, len(TARGETS)), dtype=np.int32)
        g = world.grid
        self.tile_x, self.tile_y = np.arange(g.size) % g.width, np.arange(g.size) // g.width

    def encode(self) -> np.ndarray:
        """Write every living agent's observation into :attr:`buffer` (empty slots: zeros) and return it.

        Rows ``[0, last living slot]`` are computed in place (slot-indexed, so slowly changing blocks persist);
        rows of empty slots among them are zeroed afterwards.
        """
        a = self.world.agents
        alive = a.alive
        snapshot = alive.tobytes()
        if snapshot != self._alive_bytes:
            self.buffer[self._alive & ~alive] = 0.0  # rows of agents that left
            self._alive[:] = alive
            self._alive_bytes = snapshot
        live = alive.nonzero()[0]
        if not len(live):
            return self.buffer
        n = int(live[-1]) + 1
        out = self.buffer[:n]
        self.common.write(n, out)
        tiles = a.tile[:n]
        # Targets (and hint planes) depend only on where agents stand and who they are.
        moved = self.targets.refresh(live) or tiles.tobytes() != self._tiles
        if moved:
            self._tiles = tiles.tobytes()
            obj, dist, field = self.targets.nearest(n, tiles)
            self._write_targets(out, tiles, obj, dist, n)
            self._fields = np.where(obj >= 0, field, -1)
        if self.map is not None:
            self.map.update()
            view = out[:, self.m_start : self.m_stop].reshape(n, self.cells, -1)
            idx = self.map.cut(tiles, view)
            if self.hint_stop and moved:
                self.map.hints(idx, self._fields, out[:, self.hint_start : self.hint_stop].reshape(n, len(TARGETS), -1))
        else:
            self._write_path_hint(out, n, tiles, self._fields)
        if len(live) < n:
            out[~alive[:n]] = 0.0
        return self.buffer

    def _write_targets(self, out: np.ndarray, tiles: np.ndarray, obj: np.ndarray, dist: np.ndarray, n: int) -> None:
        o = self.world.objects
        block = out[:, self.t_start : self.t_stop].reshape(n, len(TARGETS), 4)
        present = obj >= 0
        dx = (o.x.take(obj) - self.tile_x.take(tiles)[:, None]) * present
        dy = (o.y.take(obj) - self.tile_y.take(tiles)[:, None]) * present
        norm = np.hypot(dx, dy)
        np.maximum(norm, 1e-9, out=norm)
        block[..., 0] = present
        block[..., 1] = np.minimum(dist * self.distance_scale, 1.0)
        block[..., 2] = dx / norm
        block[..., 3] = dy / norm

    def _write_path_hint(self, out: np.ndarray, n: int, tiles: np.ndarray, fields: np.ndarray) -> None:
        a, g = self.world.agents, self.world.grid
        dest = a.dest_field[:n]
        fallback = fields[self._rows[:n], NEED_TARGET[a.needs[:n].argmax(axis=1)]]
        dest = np.where(dest >= 0, dest, fallback)
        direction = np.where(dest >= 0, g.step[np.maximum(dest, 0), tiles], -1)
        out[:, self.h_start : self.h_start + 4] = HINT_ROWS[direction + 1]

"""``ObservationEncoder``: writes every living agent's float32 observation into one preallocated buffer.

Rows are slot-indexed and persist between encodes: each block is written by one compiled pass over the
living rows (``CommonBlock``, ``KeyTargets``, ``MapWindow``), and rows of agents that left are zeroed. The
buffer is the encoder's memory (the map block is updated cell by cell), so callers read it and never write
it. See docs/observations.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from townlet.observations.common import CommonBlock
from townlet.observations.layout import TARGETS, FeatureLayout, layout_of
from townlet.observations.local_map import MapWindow
from townlet.observations.targets import KeyTargets

if TYPE_CHECKING:
    from townlet.world.state import World


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
        blocks = self.layout.blocks
        self.common = CommonBlock(world, self.layout)
        self.targets = KeyTargets(world)
        self.t_start = blocks["targets"][0]
        self.h_start = blocks["path_hint"][0] if "path_hint" in blocks else -1
        self.map = MapWindow(world, self.layout.channels, len(TARGETS)) if self.layout.window else None
        self.m_start = blocks["map"][0] if "map" in blocks else -1
        self.hint_start = blocks["hints"][0] if "hints" in blocks else -1
        self._seen_alive = np.zeros(cap, dtype=bool)
        self._seen_spawn = np.full(cap, -1, dtype=np.int64)
        self._fresh = np.zeros(cap, dtype=bool)
        self._encodes = 0

    def encode(self) -> np.ndarray:
        """Write every living agent's observation into :attr:`buffer` (empty slots: zeros) and return it."""
        a = self.world.agents
        n = _population(a.alive, a.spawn_tick, self._seen_alive, self._seen_spawn, self._fresh, self.buffer,
                        self._encodes == 0)
        self._encodes += 1
        if not n:
            return self.buffer
        out = self.buffer
        lines = self.common.read_queues()
        self.common.write(n, out, self._fresh, lines)
        self.targets.write(n, out, self.t_start, self.h_start)
        if self.map is not None:
            self.map.write(n, out, self.m_start, self._fresh, self.common.queue_length, self.hint_start,
                           self.targets.nearest_field)
        return self.buffer


@numba.njit(cache=True)
def _population(alive, spawn, seen_alive, seen_spawn, fresh, out, first):
    """Mark ``fresh`` the agents not seen at the last encode, zero the rows of those that left; return n.

    ``n`` is one past the last living slot. On the ``first`` encode every empty row is zeroed.
    """
    n = 0
    for s in range(len(alive)):
        fresh[s] = alive[s] and (not seen_alive[s] or spawn[s] != seen_spawn[s])
        if (seen_alive[s] or first) and not alive[s]:
            out[s, :] = 0.0
        seen_alive[s] = alive[s]
        seen_spawn[s] = spawn[s]
        if alive[s]:
            n = s + 1
    return n

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

from townlet.observations.arrays import agent_arrays, object_arrays
from townlet.observations.common import CommonBlock, _write_common
from townlet.observations.layout import TARGETS, FeatureLayout, layout_of
from townlet.observations.local_map import MapWindow, _write_windows
from townlet.observations.targets import KeyTargets, _write_targets

if TYPE_CHECKING:
    from townlet.world.state import World


# (population, agents, objects, common, targets, windows): the arguments of encode_blocks after the scalars
KernelArgs = tuple[tuple, tuple, tuple, tuple, tuple, tuple | None]


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
        self._args: KernelArgs = ((), (), (), (), (), None)
        self._args_dist: tuple | None = None  # the distance-field arrays the arguments were taken with

    def prepare(self) -> tuple[bool, int, int, bool]:
        """The Python half of an encode; returns its scalars ``(first, tick, weather, any_lines)``.

        Reads the queues into arrays and rebuilds the target candidates of agents whose home, job or
        occupant changed. The compiled half is :func:`encode_blocks` with these scalars and :meth:`kernel_args`.
        """
        w = self.world
        first = self._encodes == 0
        self._encodes += 1
        any_lines = self.common.read_queues()
        self.targets.refresh()
        return first, w.tick, int(w.weather.state), any_lines

    def kernel_args(self) -> KernelArgs:
        """The compiled half's arguments ``(population, agents, objects, common, targets, windows)``.

        They hold the town's own arrays, so they are built once, and again when the grid's distance arrays
        grow (a new distance field). The bundles are passed as plain tuples (a plain tuple crosses from
        Python into compiled code faster than a named one); the compiled half names them again.
        """
        dist = self.world.grid.fields.arrays
        if self._args_dist is not dist:
            a, out, fresh = self.world.agents, self.buffer, self._fresh
            windows = None
            if self.map is not None:
                windows = self.map.kernel_args(
                    out, self.m_start, fresh, self.common.queue_length, self.hint_start, self.targets.nearest_field
                )
            self._args = (
                (a.alive, a.spawn_tick, self._seen_alive, self._seen_spawn, fresh, out),
                tuple(agent_arrays(a)),
                tuple(object_arrays(self.world.objects)),
                tuple(self.common.kernel_args(out, fresh)),
                tuple(self.targets.kernel_args(out, self.t_start, self.h_start)),
                None if windows is None else tuple(windows),
            )
            self._args_dist = dist
        return self._args

    def encode(self) -> np.ndarray:
        """Write every living agent's observation into :attr:`buffer` (empty slots: zeros) and return it."""
        first, tick, weather, lines = self.prepare()
        population, agents, objects, common, targets, windows = self.kernel_args()
        encode_blocks(first, tick, weather, lines, population, agents, objects, common, targets, windows)
        return self.buffer


@numba.njit(cache=True)
def encode_blocks(
    first: bool,
    tick: int,
    weather: int,
    any_lines: bool,
    population: tuple,
    agents: tuple,
    objects: tuple,
    common: tuple,
    targets: tuple,
    windows: tuple | None,
) -> None:
    """The compiled half of an encode (see :meth:`ObservationEncoder.prepare`); ``windows`` None: no map window.

    The bundles come as plain tuples (:meth:`ObservationEncoder.kernel_args`); each block's kernel names them again.
    """
    n = _population(first, *population)
    if n:
        _write_common(n, tick, weather, any_lines, agents, objects, common)
        _write_targets(n, agents, objects, targets)
        if windows is not None:
            _write_windows(n, agents, objects, windows)


@numba.njit(cache=True)
def _population(first, alive, spawn, seen_alive, seen_spawn, fresh, out):
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

"""Egocentric map windows cut from a padded, tile-major channel array with one fancy-index gather.

The town's channels live in ``float32[(H + 2p) * (W + 2p), C]`` (padding marked ``blocked``), so every agent's
``window × window`` patch is ``array[centre + offsets]``: no per-agent loop, no bounds checks. Static channels
(walls, doors, outdoors, queue nodes, object types) are written once; dynamic ones (agents, busy objects, queue
lengths) only where something changed since the last encode. Per-agent path-hint planes (closeness of each
window cell to the agent's own key targets) are gathered from the distance fields through a lookup table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from townlet.config.town_map import TileKind
from townlet.world.grid import FAR

if TYPE_CHECKING:
    from townlet.world.state import World


class MapWindow:
    """Cuts ``window × window × C`` patches around agents (row-major: row, column, channel), and hint planes.

    Args:
        world: The town.
        channels: Channel names in output order (see ``townlet.observations.layout``).
    """

    def __init__(self, world: World, channels: tuple[str, ...]) -> None:
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
        self.distance_scale = np.float32(1.0 / cfg.distance_scale)
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
        self.dx = (dx - self.half).astype(np.int64)
        self.dy = (dy - self.half).astype(np.int64)
        self.centre = self.half * w + self.half
        # Padded index -> flat map tile (0 outside the map, where ``inside`` is False).
        self.unpad = np.zeros(len(self.array), dtype=np.int64)
        self.unpad[self.pad_index] = np.arange(g.size)
        self.inside = np.zeros(len(self.array), dtype=bool)
        self.inside[self.pad_index] = True
        # Path distance -> closeness in [0, 1] (0 for unreachable ``FAR``): a lookup instead of arithmetic.
        close = 1.0 - np.minimum(np.arange(int(FAR) + 1) * self.distance_scale, 1.0)
        close[int(FAR)] = 0.0
        self.closeness = close.astype(np.float32)
        self._agent_tiles = np.zeros(0, dtype=np.int64)
        self._queued: set[int] = set()
        self._agents_snapshot = b""
        self._busy_snapshot = b""

    def update(self) -> None:
        """Refresh the dynamic channels from the world (only tiles and objects that may have changed)."""
        w, col = self.world, self.col
        a = w.agents
        if "agents" in col:
            snapshot = a.tile.tobytes() + a.alive.tobytes()
            if snapshot != self._agents_snapshot:
                self._agents_snapshot = snapshot
                tiles = a.tile[a.alive]
                touched = np.concatenate([self._agent_tiles, tiles])
                self.array[self.pad_index.take(touched), col["agents"]] = np.minimum(
                    w.occupancy.take(touched) * self.crowd, 1.0
                )
                self._agent_tiles = tiles
        o = w.objects
        if "busy" in col:
            snapshot = o.reserved_by.tobytes() + o.user.tobytes()
            if snapshot != self._busy_snapshot:
                self._busy_snapshot = snapshot
                self.array[self.object_pad, col["busy"]] = (o.reserved_by >= 0) | (o.user >= 0)
        if "queue_length" in col:
            queued = {ob for ob in w.queues.active if o.queue[ob]}
            for ob in queued | self._queued:
                self.array[self.object_pad[ob], col["queue_length"]] = min(len(o.queue[ob]) * self.queue_scale, 1.0)
            self._queued = queued

    def cut(self, tiles: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write ``window × window × C`` patches centred on ``tiles`` into ``out`` (``float32[n, window², C]``).

        Returns the padded indices of the window cells (``int64[n, window²]``), reusable by :meth:`hints`.
        """
        idx = self.pad_index.take(tiles)[:, None] + self.offsets
        self.array.take(idx, axis=0, out=out)
        if "agents" in self.col:  # the agent itself does not count
            c = self.col["agents"]
            out[:, self.centre, c] = np.minimum((self.world.occupancy.take(tiles) - 1) * self.crowd, 1.0)
        return idx

    def hints(self, idx: np.ndarray, fields: np.ndarray, out: np.ndarray) -> None:
        """Write ``float32[n, T, window²]`` closeness of each window cell to each agent's T targets into ``out``.

        Args:
            idx: Padded window-cell indices from :meth:`cut`.
            fields: ``int[n, T]`` distance field of each agent's target, -1 for none.
            out: The destination view.
        """
        grid = self.world.grid
        cells = self.unpad.take(idx)
        has = fields >= 0
        flat = (fields * has)[:, :, None] * grid.size + cells[:, None, :]
        close = self.closeness.take(grid.dist.reshape(-1).take(flat))
        np.multiply(close, self.inside.take(idx)[:, None, :] & has[:, :, None], out=out)

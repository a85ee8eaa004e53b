"""The static map as flat arrays (tile kinds, walkability, places), and the town's distance fields.

The fields themselves (windowed searches, chunk routes, sharing) live in :mod:`townlet.world.fields`;
moving toward a goal is a lookup: ``field_step(grid.fields.arrays, f, tile)`` in a kernel, or
:meth:`Grid.step_at` from Python.
"""

from __future__ import annotations

import numpy as np

from townlet.config.models import PathsConfig
from townlet.config.town_map import OUTDOOR_KINDS, TileKind, TownMap
from townlet.world.fields import (
    EAST,
    FAR,
    NORTH,
    SOUTH,
    STAY,
    UNCERTIFIED,
    UNREACHABLE,
    WEST,
    DistanceFields,
    adjacency,
)

__all__ = ["EAST", "FAR", "NORTH", "SOUTH", "STAY", "UNCERTIFIED", "UNREACHABLE", "WEST", "Grid", "adjacency"]


class Grid:
    """Flat views of the town map plus its distance fields.

    Tiles are addressed by a flat index ``y * width + x``.

    Attributes:
        width: Map width in tiles.
        height: Map height in tiles.
        kinds: ``uint8[H*W]`` tile kinds.
        walkable: ``bool[H*W]``.
        outdoors: ``bool[H*W]``; outdoor tiles hold any number of agents, indoor ones hold one.
        offsets: ``int32[5]`` flat-index offset of each direction (STAY, N, E, S, W).
        fields: The distance fields toward goal tiles (:class:`townlet.world.fields.DistanceFields`).
    """

    def __init__(self, town: TownMap, paths: PathsConfig | None = None) -> None:
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
        paths = paths or PathsConfig()
        self.fields = DistanceFields(
            self.width, self.height, self.walkable, paths.chunk, paths.margin, paths.route_budget_mb << 20
        )

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

    def field(self, goals: tuple[int, ...] | list[int]) -> int:
        """Index of the distance field toward the nearest of ``goals`` (flat tiles), built on first request."""
        return self.fields.field(goals)

    @property
    def count(self) -> int:
        """Distance fields built so far."""
        return self.fields.count

    def dist_at(self, field: int, tile: int) -> int:
        """Walking distance from ``tile`` along ``field`` (``FAR`` where unreachable)."""
        return self.fields.dist_at(field, tile)

    def step_at(self, field: int, tile: int) -> int:
        """Next-step direction from ``tile`` along ``field`` (``STAY`` at a goal, ``UNREACHABLE`` without a path)."""
        return self.fields.step_at(field, tile)

    def is_kind(self, tile: int, kind: TileKind) -> bool:
        """Whether a flat tile is of a given kind."""
        return int(self.kinds[tile]) == int(kind)

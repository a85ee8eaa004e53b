"""Objects of the town (beds, fridges, tills, desks...) and the places that contain them.

Per-object state (who reserved it, who uses it, who queues for it) is held in arrays and small lists
indexed by object number; queues are ordered lists of agent slots.
"""

from __future__ import annotations

import numpy as np

from townlet.config.town_map import TownMap
from townlet.world.grid import Grid


class ObjectTable:
    """All objects with their positions, access tiles, queues and reservations.

    Attributes:
        ids: Object ids from the map (``"home_0.bed.0"``).
        types: Object type per object (``"bed"``).
        place: ``int32[M]`` place index per object.
        tile: ``int32[M]`` flat tile of the object itself.
        access: Flat access tiles per object (where a user stands).
        queue_nodes: Flat queue-node tiles per object, nearest first.
        reserved_by: ``int32[M]`` slot holding the reservation, -1 if none.
        reserved_at: ``int64[M]`` tick the reservation was granted.
        user: ``int32[M]`` slot currently using the object, -1 if none.
        queue: Per object, the ordered slots waiting for it.
    """

    def __init__(self, town: TownMap, grid: Grid) -> None:
        self.grid = grid
        objs = town.objects
        place_ids = [p.id for p in town.places]
        self.place_ids = place_ids
        self.place_kinds = [p.kind for p in town.places]
        self.count = len(objs)
        self.ids = [o.id for o in objs]
        self.index_of = {o.id: i for i, o in enumerate(objs)}
        self.types = [o.type for o in objs]
        self.type_names = tuple(sorted(set(self.types)))
        self.type_code = np.array([self.type_names.index(t) for t in self.types], dtype=np.int16)
        place_of = {pid: i for i, pid in enumerate(place_ids)}
        self.place = np.array([place_of[o.place] for o in objs], dtype=np.int32)
        self.tile = np.array([grid.tile(o.x, o.y) for o in objs], dtype=np.int32)
        self.access = [tuple(grid.tile(x, y) for x, y in o.access) for o in objs]
        self.queue_nodes = [tuple(grid.tile(x, y) for x, y in o.queue) for o in objs]
        self.x = self.tile % grid.width
        self.y = self.tile // grid.width
        self.field = np.full(self.count, -1, dtype=np.int32)
        self._node_fields: dict[int, tuple[int, ...]] = {}
        self.reserved_by = np.full(self.count, -1, dtype=np.int32)
        self.reserved_at = np.zeros(self.count, dtype=np.int64)
        self.user = np.full(self.count, -1, dtype=np.int32)
        self.queue: list[list[int]] = [[] for _ in range(self.count)]
        self.by_type: dict[str, np.ndarray] = {
            t: np.array([i for i, ot in enumerate(self.types) if ot == t], dtype=np.int32) for t in self.type_names
        }
        self.in_place: list[np.ndarray] = [
            (self.place == p).nonzero()[0].astype(np.int32) for p in range(len(place_ids))
        ]
        self.places_of_kind: dict[str, list[int]] = {}
        for i, kind in enumerate(self.place_kinds):
            self.places_of_kind.setdefault(kind, []).append(i)
        self.cooldown: dict[tuple[int, int], int] = {}

    def field_of(self, obj: int) -> int:
        """Distance field toward the object's access tiles (computed on first use)."""
        f = int(self.field[obj])
        if f < 0:
            f = self.grid.field(self.access[obj])
            self.field[obj] = f
        return f

    def node_fields(self, obj: int) -> tuple[int, ...]:
        """Distance fields toward each of the object's queue nodes, in queue order (computed once)."""
        found = self._node_fields.get(obj)
        if found is None:
            found = tuple(self.grid.field((node,)) for node in self.queue_nodes[obj])
            self._node_fields[obj] = found
        return found

    def of_type_in_place(self, obj_type: str, place: int) -> np.ndarray:
        """Objects of a type inside one place."""
        objs = self.by_type.get(obj_type)
        if objs is None:
            return np.zeros(0, dtype=np.int32)
        return objs[self.place[objs] == place]

    def of_type_in_kind(self, obj_type: str, kind: str) -> np.ndarray:
        """Objects of a type inside any place of a kind (e.g. every café table)."""
        objs = self.by_type.get(obj_type)
        if objs is None:
            return np.zeros(0, dtype=np.int32)
        kinds = np.array([self.place_kinds[p] == kind for p in self.place[objs]], dtype=bool)
        return objs[kinds]

    def is_free(self, obj: int) -> bool:
        """No reservation, no user and nobody queueing."""
        return self.reserved_by[obj] < 0 and self.user[obj] < 0 and not self.queue[obj]

    def on_cooldown(self, slot: int, obj: int, tick: int) -> bool:
        """Whether the agent is barred from this object by a fairness cooldown."""
        until = self.cooldown.get((slot, obj))
        if until is None:
            return False
        if until <= tick:
            del self.cooldown[(slot, obj)]
            return False
        return True

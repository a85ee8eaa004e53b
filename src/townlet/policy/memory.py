"""Agent memory (SPEC 3): the shops each agent knows and the objects that recently failed it, in arrays.

Two fixed-size tables per agent slot, kept by the option controller as its agents finish or fail steps:

| array | shape | meaning |
|---|---|---|
| `known_shops` | `bool[C, S]` | shop `s` (a place of a kind in `economy.shops`) has been visited |
| `failed_obj` | `int32[C, K]` | objects that failed the agent (-1: empty), `K` = `memory.failure_slots` |
| `failed_until` | `int64[C, K]` | the tick each is remembered until (`memory.failure_ticks` after the failure) |

A step failure is remembered when its reason is the object's fault (``memory.failure_reasons``: a shower
whose water was cut mid-use, an empty shelf, a closed café), not the agent's (no money, a timeout, an
interruption). Until the memory expires the scripted controller leaves that object out of its candidates
(:meth:`AgentMemory.usable`): an agent does not walk back to a broken shower it just left. A new failure
takes the slot of the object's earlier one, else the slot expiring first. A slot's memory is wiped when its
agent leaves. The arrays are part of snapshots (as component state) and of the state hash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from townlet.world.state import World


class AgentMemory:
    """Known shops and recent failures of every agent slot.

    Args:
        world: The town (its objects, places, affordances and ``memory`` config).

    Attributes:
        shop_places: ``int32[S]`` the place index of each shop.
        shop_of_object: ``int32[M]`` the shop index of each object's place (-1: not a shop).
        known_shops: ``bool[C, S]`` shops each agent has visited.
        failed_obj: ``int32[C, K]`` objects that failed each agent (-1: empty).
        failed_until: ``int64[C, K]`` the tick up to which each failure is remembered (exclusive).
    """

    def __init__(self, world: World) -> None:
        cfg = self.cfg = world.config.memory  # (read at each use: a snapshot restores state, never settings)
        o = world.objects
        shops = sorted(world.economy.stock)  # the places of the kinds in economy.shops
        self.shop_places = np.array(shops, dtype=np.int32)
        index = np.full(len(o.place_ids), -1, dtype=np.int32)
        index[self.shop_places] = np.arange(len(shops), dtype=np.int32)
        self.shop_of_object = index[o.place] if o.count else np.zeros(0, dtype=np.int32)
        cap = world.agents.capacity
        self.known_shops = np.zeros((cap, len(shops)), dtype=bool)
        self.failed_obj = np.full((cap, cfg.failure_slots), -1, dtype=np.int32)
        self.failed_until = np.zeros((cap, cfg.failure_slots), dtype=np.int64)

    def visited(self, slot: int, obj: int) -> None:
        """The agent was at ``obj`` (used it, or tried to): a shop there is known from now on."""
        shop = int(self.shop_of_object[obj]) if 0 <= obj < len(self.shop_of_object) else -1
        if shop >= 0:
            self.known_shops[slot, shop] = True

    def failed(self, slot: int, obj: int, reason: str, tick: int) -> bool:
        """Remember that ``obj`` failed the agent at ``tick`` when ``reason`` is the object's fault; True if so."""
        cfg = self.cfg
        if obj < 0 or cfg.failure_ticks == 0 or not reason.startswith(tuple(cfg.failure_reasons)):
            return False
        row = self.failed_obj[slot]
        same = np.flatnonzero(row == obj)
        k = int(same[0]) if len(same) else int(np.argmin(self.failed_until[slot]))  # else the first to expire
        row[k] = obj
        self.failed_until[slot, k] = tick + cfg.failure_ticks
        return True

    def avoided(self, slot: int, tick: int) -> np.ndarray:
        """The objects the agent still remembers failing it."""
        return self.failed_obj[slot][self.failed_until[slot] > tick]

    def usable(self, slot: int, candidates: tuple[int, ...], tick: int) -> tuple[int, ...]:
        """``candidates`` without the objects the agent remembers failing it (the same tuple when none is)."""
        if not (self.failed_until[slot] > tick).any():
            return candidates
        avoided = set(self.avoided(slot, tick).tolist())
        if avoided.isdisjoint(candidates):
            return candidates
        return tuple(obj for obj in candidates if obj not in avoided)

    def forget(self, slot: int) -> None:
        """Wipe a slot whose agent left (the next one there starts knowing nothing)."""
        self.known_shops[slot] = False
        self.failed_obj[slot] = -1
        self.failed_until[slot] = 0

    def digest(self) -> bytes:
        """The memory's bytes, for the state hash."""
        return b"".join(a.tobytes() for a in (self.known_shops, self.failed_obj, self.failed_until))

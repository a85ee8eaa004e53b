"""Identity-embedding slots: a small pool of ids for observations, reused only after a cooldown.

Learned policies see other agents through an id embedding. A newcomer must not inherit the embedding of
someone who just left (its friends would mistake it for them), so a released slot rests for
``reuse_cooldown`` ticks before it is handed out again. When every slot is busy or resting, the slot
released longest ago is reused anyway: that forced reuse is counted and reported as an event.
"""

from __future__ import annotations

import numpy as np


class IdentitySlots:
    """Allocator of embedding slots to agent slots.

    Attributes:
        size: Number of embedding slots.
        cooldown: Ticks a released slot rests before reuse.
        of_agent: ``int32[C]`` embedding slot per agent slot (-1 for none).
        forced_reuses: How many allocations had to break the cooldown or share a slot.
    """

    def __init__(self, size: int, cooldown: int, capacity: int) -> None:
        self.size = size
        self.cooldown = cooldown
        self.holder = np.full(size, -1, dtype=np.int32)
        self.released_at = np.full(size, -(10**12), dtype=np.int64)
        self.assigned_at = np.zeros(size, dtype=np.int64)
        self.of_agent = np.full(capacity, -1, dtype=np.int32)
        self.forced_reuses = 0

    def allocate(self, agent: int, tick: int) -> tuple[int, bool]:
        """Give ``agent`` an embedding slot; returns ``(slot, forced)``."""
        free = self.holder < 0
        rested = free & (tick - self.released_at >= self.cooldown)
        forced = False
        if rested.any():
            slot = int(rested.nonzero()[0][0])
        elif free.any():
            candidates = free.nonzero()[0]
            slot = int(candidates[np.argmin(self.released_at[candidates])])
            forced = True
        else:
            slot = int(np.argmin(self.assigned_at))  # more agents than slots: share the oldest
            forced = True
        if forced:
            self.forced_reuses += 1
        self.holder[slot] = agent
        self.assigned_at[slot] = tick
        self.of_agent[agent] = slot
        return slot, forced

    def release(self, agent: int, tick: int) -> None:
        """Return an agent's slot to the pool (it starts resting now)."""
        slot = int(self.of_agent[agent])
        if slot < 0:
            return
        self.of_agent[agent] = -1
        if self.holder[slot] == agent:
            self.holder[slot] = -1
            self.released_at[slot] = tick

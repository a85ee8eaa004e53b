"""Queues and reservations: who may use a busy object next, fairly, and with nothing left stuck.

An agent walking to an object asks for it once within ``reserve_radius``: a free object is reserved,
a busy one puts the agent at the end of its queue (walking to the next free queue node). Requests for
the same object in the same tick are ordered by patience plus a little jitter. Reservations expire if
the holder does not start in time (the holder then gets a fairness cooldown at that object), queue
waits time out, and a freed object goes to the head of its queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from townlet.world.agents import Activity
from townlet.world.events import EventKind

if TYPE_CHECKING:
    from townlet.world.state import World

PATIENCE = 3


class Queues:
    """Reservation and queue rules over the object table."""

    def __init__(self, world: World) -> None:
        cfg = world.config.queues
        self.cfg = cfg
        self.active: set[int] = set()  # objects with a reservation or a queue
        self.queue_since = np.zeros(world.agents.capacity, dtype=np.int64)

    def reserve(self, world: World, slot: int, obj: int) -> None:
        """Grant ``obj`` to ``slot`` and send it to the access tiles."""
        o, a = world.objects, world.agents
        o.reserved_by[obj] = slot
        o.reserved_at[obj] = world.tick
        self.active.add(obj)
        a.activity[slot] = Activity.MOVING
        a.requested[slot] = True
        a.dest_field[slot] = o.field_of(obj)

    def request(self, world: World, requests: list[tuple[int, int]]) -> None:
        """Handle this tick's requests ``(slot, obj)``: reserve or queue, with tie-breaks per object."""
        if len(requests) > 1:
            keys = self._priority(world, np.array([s for s, _ in requests]))
            requests = [requests[i] for i in np.argsort(keys, kind="stable")]
            objs = [obj for _, obj in requests]
            contested = {obj for obj in objs if objs.count(obj) > 1 and world.objects.is_free(obj)}
            for obj in sorted(contested):
                world.counters["queue_conflicts"] += 1
                world.emit(EventKind.TIE_BREAK, obj=obj, detail=world.objects.ids[obj])
                world.hook_event("conflict", -1, obj=obj, detail="tie_break")
        for slot, obj in requests:
            world.agents.requested[slot] = True
            if world.objects.is_free(obj):
                self.reserve(world, slot, obj)
            else:
                self._join(world, slot, obj)

    def _priority(self, world: World, slots: np.ndarray) -> np.ndarray:
        j, by_patience = self.tie_break()  # uniform(-j, j), drawn the way Generator.uniform draws it
        jitter = world.rng.world.random(len(slots)) * (2.0 * j) - j
        if not by_patience:
            return jitter
        return world.agents.personality[slots, PATIENCE] + jitter  # the more patient yields

    def tie_break(self) -> tuple[float, bool]:
        """``(jitter, by_patience)``: what a kernel needs to compute :meth:`_priority` itself.

        The priority is ``patience + j`` (``j`` alone when not ``by_patience``) with ``j = u * 2 * jitter -
        jitter`` for ``u`` drawn from the world stream, exactly as :meth:`_priority` draws it.
        """
        return float(self.cfg.tie_jitter), self.cfg.tie_break != "uniform"

    def _join(self, world: World, slot: int, obj: int) -> None:
        o = world.objects
        queue = o.queue[obj]
        ahead = queue[-1] if queue else int(max(o.reserved_by[obj], o.user[obj]))
        queue.append(slot)
        self.active.add(obj)
        self.queue_since[slot] = world.tick
        world.agents.activity[slot] = Activity.QUEUED
        self._place(world, obj)
        world.emit(EventKind.QUEUE_JOINED, agent=slot, other=ahead, obj=obj, value=float(len(queue)))
        if ahead >= 0:
            world.relationships.apply_pair(world, slot, ahead, "queued_politely")

    def _place(self, world: World, obj: int) -> None:
        """Point every queue member at its node (members beyond the last node wait where they are)."""
        fields = world.objects.node_fields(obj)
        for i, slot in enumerate(world.objects.queue[obj]):
            world.agents.dest_field[slot] = fields[i] if i < len(fields) else -1

    def leave(self, world: World, slot: int, obj: int) -> None:
        """Take an agent out of an object's queue (and re-place the others)."""
        queue = world.objects.queue[obj]
        if slot in queue:
            queue.remove(slot)
            self._place(world, obj)

    def release(self, world: World, obj: int) -> None:
        """Free an object's reservation and use; the queue head is served on the next update."""
        world.objects.reserved_by[obj] = -1
        world.objects.user[obj] = -1

    def update(self, world: World) -> None:
        """Expire stale reservations, time out long queue waits, and serve freed objects."""
        if not self.active:
            return
        o, tick = world.objects, world.tick
        for obj in sorted(self.active):
            holder = int(o.reserved_by[obj])
            if holder >= 0 and o.user[obj] < 0 and tick - o.reserved_at[obj] > self.cfg.reservation_timeout:
                self._expire(world, obj, holder)
            queue = o.queue[obj]
            if queue:
                stale = [s for s in queue if tick - self.queue_since[s] > self.cfg.queue_timeout]
                for slot in stale:
                    self.leave(world, slot, obj)
                    world.emit(EventKind.QUEUE_TIMEOUT, agent=slot, obj=obj)
                    world.fail_step(slot, "queue_timeout")
            if o.reserved_by[obj] < 0 and o.user[obj] < 0 and queue:
                head = queue.pop(0)
                self.reserve(world, head, obj)
                self._place(world, obj)
            if o.reserved_by[obj] < 0 and o.user[obj] < 0 and not queue:
                self.active.discard(obj)

    def _expire(self, world: World, obj: int, holder: int) -> None:
        o = world.objects
        self.release(world, obj)
        o.cooldown[(holder, obj)] = world.tick + self.cfg.fairness_cooldown
        world.counters["queue_conflicts"] += 1
        world.emit(EventKind.RESERVATION_EXPIRED, agent=holder, obj=obj)
        event = "blocked_shower" if o.types[obj] == "shower" else "ghost_pushed"
        for waiting in o.queue[obj]:
            world.relationships.apply(world, waiting, holder, event)
        world.hook_event("conflict", holder, obj=obj, detail="reservation_expired")
        world.fail_step(holder, "reservation_expired")

    def drop_agent(self, world: World, slot: int) -> None:
        """Remove every trace of an agent from reservations and queues (step ends, agent leaves)."""
        o = world.objects
        obj = int(world.agents.target_obj[slot])
        candidates = [obj] if obj >= 0 else list(self.active)
        for ob in candidates:
            if o.reserved_by[ob] == slot or o.user[ob] == slot:
                self.release(world, ob)
            if slot in o.queue[ob]:
                self.leave(world, slot, ob)

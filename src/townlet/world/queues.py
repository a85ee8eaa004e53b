"""Queues and reservations: who may use a busy object next, fairly, and with nothing left stuck.

An agent walking to an object asks for it once within ``reserve_radius``: a free object is reserved,
a busy one puts the agent at the end of its queue (walking to the next free queue node). Requests for
the same object in the same tick are ordered by patience plus a little jitter. Reservations expire if
the holder does not start in time (the holder then gets a fairness cooldown at that object), queue
waits time out, and a freed object goes to the head of its queue.

Each tick one compiled pass over the objects (:func:`due`) finds the few that need a rule applied (a
reservation to expire, a queue head waiting too long, a freed object with a queue); only those are handled
in Python, in object order. Queue lengths, each queue head's waiting start and the object each agent queues
for are kept in arrays beside the ordered lists, so that pass and the controller's object choice read no lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from townlet.world.agents import Activity
from townlet.world.events import EventKind

if TYPE_CHECKING:
    from townlet.world.state import World

PATIENCE = 3
NOT_WAITING = np.iinfo(np.int64).max  # head_since of an empty queue


class Queues:
    """Reservation and queue rules over the object table.

    Attributes:
        queue_since: ``int64[C]`` tick each agent joined its queue.
        queued_for: ``int32[C]`` the object each agent queues for, -1 for none.
        length: ``int32[M]`` agents queued per object.
        head_since: ``int64[M]`` tick the head of each object's queue joined it (``NOT_WAITING`` when empty).
    """

    def __init__(self, world: World) -> None:
        cfg = world.config.queues
        self.cfg = cfg
        self.queue_since = np.zeros(world.agents.capacity, dtype=np.int64)
        self.queued_for = np.full(world.agents.capacity, -1, dtype=np.int32)
        self.length = np.zeros(world.objects.count, dtype=np.int32)
        self.head_since = np.full(world.objects.count, NOT_WAITING, dtype=np.int64)
        self._due = np.empty(world.objects.count, dtype=np.int64)  # scratch: objects due a rule this tick

    def reindex(self, world: World) -> None:
        """Rebuild the arrays beside the ordered queues from the queues themselves (after a snapshot loads)."""
        self.queued_for[:] = -1
        for obj, queue in enumerate(world.objects.queue):
            self.queued_for[queue] = obj
            self._measure(world, obj)

    def lines(self) -> np.ndarray:
        """Objects with at least one agent queued, ascending."""
        return np.flatnonzero(self.length)

    def _measure(self, world: World, obj: int) -> None:
        queue = world.objects.queue[obj]
        self.length[obj] = len(queue)
        self.head_since[obj] = self.queue_since[queue[0]] if queue else NOT_WAITING

    def reserve(self, world: World, slot: int, obj: int) -> None:
        """Grant ``obj`` to ``slot`` and send it to the access tiles."""
        o, a = world.objects, world.agents
        o.reserved_by[obj] = slot
        o.reserved_at[obj] = world.tick
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
        self.queue_since[slot] = world.tick
        self.queued_for[slot] = obj
        self._measure(world, obj)
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
            self.queued_for[slot] = -1
            self._measure(world, obj)
            self._place(world, obj)

    def release(self, world: World, obj: int) -> None:
        """Free an object's reservation and use; the queue head is served on the next update."""
        world.objects.reserved_by[obj] = -1
        world.objects.user[obj] = -1

    def update(self, world: World) -> None:
        """Expire stale reservations, time out long queue waits, and serve freed objects."""
        o, cfg = world.objects, self.cfg
        n = due(
            o.reserved_by,
            o.reserved_at,
            o.user,
            self.length,
            self.head_since,
            world.tick,
            cfg.reservation_timeout,
            cfg.queue_timeout,
            self._due,
        )
        if n:
            self.apply_due(world, n)

    def apply_due(self, world: World, n: int) -> None:
        """Apply the rules to the ``n`` objects :func:`due` found (in the queues' ``_due`` scratch), in object order."""
        o, tick, cfg = world.objects, world.tick, self.cfg
        for obj in self._due[:n].tolist():
            holder = int(o.reserved_by[obj])
            if holder >= 0 and o.user[obj] < 0 and tick - o.reserved_at[obj] > cfg.reservation_timeout:
                self._expire(world, obj, holder)
            queue = o.queue[obj]
            if self.head_since[obj] < tick - cfg.queue_timeout:
                # Queues are first come first served, so those waiting too long are at the front.
                stale = [s for s in queue if tick - self.queue_since[s] > cfg.queue_timeout]
                for slot in stale:
                    self.leave(world, slot, obj)
                    world.emit(EventKind.QUEUE_TIMEOUT, agent=slot, obj=obj)
                    world.fail_step(slot, "queue_timeout")
            if o.reserved_by[obj] < 0 and o.user[obj] < 0 and queue:
                head = queue.pop(0)
                self.queued_for[head] = -1
                self._measure(world, obj)
                self.reserve(world, head, obj)
                self._place(world, obj)

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
        if obj >= 0:
            held = (obj,)
        else:  # (no step holds anything without a target object; look anyway, it is one compiled pass)
            held = tuple(_held(o.reserved_by, o.user, slot, int(self.queued_for[slot])).tolist())
        for ob in held:
            if o.reserved_by[ob] == slot or o.user[ob] == slot:
                self.release(world, ob)
            if self.queued_for[slot] == ob:
                self.leave(world, slot, ob)


@numba.njit(cache=True)
def due(
    reserved_by: np.ndarray,
    reserved_at: np.ndarray,
    user: np.ndarray,
    length: np.ndarray,
    head_since: np.ndarray,
    tick: int,
    reservation_timeout: int,
    queue_timeout: int,
    out: np.ndarray,
) -> int:
    """Objects with a reservation to expire, a queue head waiting too long, or a queue to serve.

    They go into ``out`` in ascending order; the count is returned.
    """
    n = 0
    for obj in range(len(reserved_by)):
        held, used = reserved_by[obj] >= 0, user[obj] >= 0
        if not held and length[obj] == 0:
            continue
        expire = held and not used and tick - reserved_at[obj] > reservation_timeout
        stale = length[obj] > 0 and tick - head_since[obj] > queue_timeout
        serve = not held and not used and length[obj] > 0
        if expire or stale or serve:
            out[n] = obj
            n += 1
    return n


@numba.njit(cache=True)
def _held(reserved_by: np.ndarray, user: np.ndarray, slot: int, queued_for: int) -> np.ndarray:
    """Objects (ascending) that ``slot`` reserves, uses or queues for."""
    out = np.empty(len(reserved_by), dtype=np.int64)
    n = 0
    for obj in range(len(reserved_by)):
        if reserved_by[obj] == slot or user[obj] == slot or obj == queued_for:
            out[n] = obj
            n += 1
    return out[:n]

"""Movement: every walking agent takes one step along its distance field, with collisions.

Indoor tiles hold one agent, outdoor tiles any number. A step into a tile held by an agent that is not
moving away is blocked; several agents stepping into one tile are ordered by patience plus jitter and
only the first moves. An agent blocked ``ghost_after`` times in a row takes one "ghost step" through
(counted and logged): the deadlock breaker. Rain makes outdoor steps cost extra ticks.

The per-agent work runs in two compiled kernels (:func:`_plan` and :func:`_resolve`, numba) that loop over
the walkers once; the Python side draws the tie-break jitter, fails lost walkers and emits events, in the
same order as a vectorised implementation would, so the random streams and the results do not depend on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from townlet.world.agents import Activity
from townlet.world.events import EventKind

if TYPE_CHECKING:
    from townlet.world.state import World

ARRIVED, LOST, GOING, RAIN_WAIT = 0, 1, 2, 3  # _plan's verdict per walker
STEPPED, STAYED, GHOSTED = 0, 1, 2  # _resolve's verdict per goer
MOVING, QUEUED = int(Activity.MOVING), int(Activity.QUEUED)


def walkers(world: World) -> np.ndarray:
    """Slots of agents with somewhere to walk to."""
    a = world.agents
    return _walkers(a.alive, a.dest_field, a.activity, MOVING, QUEUED)


def move(world: World) -> np.ndarray:
    """Advance walkers one step; return the slots of walkers standing at their destination."""
    a, g, wx = world.agents, world.grid, world.weather
    movers = walkers(world)
    if not len(movers):
        return movers
    cost = float(wx.rain_cost) if wx.is_raining else 0.0
    verdict, target = _plan(movers, a.tile, a.dest_field, g.step, g.offsets, g.outdoors, cost, world.tick)
    arrived = movers[verdict == ARRIVED]
    for slot in movers[verdict == LOST]:
        world.fail_step(int(slot), "unreachable")
    going = verdict == GOING
    movers, target = movers[going], target[going]
    if not len(movers):
        return arrived
    keys = world.queues._priority(world, movers) if len(movers) > 1 else np.zeros(len(movers))
    outcome, occupant = _resolve(
        movers, target, keys, a.tile, a.alive, a.blocked, a.last_progress, world.occupancy, g.outdoors,
        world.config.queues.ghost_after, world.tick, world.scratch_counts, world.scratch_slots,
    )
    for i in (outcome == GHOSTED).nonzero()[0]:
        slot, other = int(movers[i]), int(occupant[i])
        world.counters["ghost_steps"] += 1
        world.emit(EventKind.GHOST_STEP, agent=slot, other=other, value=float(target[i]))
        if other >= 0:
            world.relationships.apply(world, other, slot, "ghost_pushed")
    return arrived


@numba.njit(cache=True)
def _walkers(alive: np.ndarray, dest: np.ndarray, activity: np.ndarray, moving: int, queued: int) -> np.ndarray:
    n = 0
    out = np.empty(len(alive), dtype=np.int64)
    for s in range(len(alive)):
        if alive[s] and dest[s] >= 0 and (activity[s] == moving or activity[s] == queued):
            out[n] = s
            n += 1
    return out[:n]


@numba.njit(cache=True)
def _plan(movers: np.ndarray, tile: np.ndarray, dest: np.ndarray, step: np.ndarray, offsets: np.ndarray,
          outdoors: np.ndarray, rain_cost: float, tick: int) -> tuple[np.ndarray, np.ndarray]:
    """Each walker's verdict (arrived, lost, going, waiting out the rain) and the tile it steps into."""
    n = len(movers)
    verdict = np.empty(n, dtype=np.int8)
    target = np.empty(n, dtype=np.int64)
    for i in range(n):
        s = movers[i]
        here = tile[s]
        d = step[dest[s], here]
        target[i] = here
        if d == 0:
            verdict[i] = ARRIVED
        elif d < 0:
            verdict[i] = LOST
        else:
            verdict[i] = GOING
            target[i] = here + offsets[d]
            if rain_cost > 0.0 and outdoors[here]:
                # With cost c an outdoor walker steps on the ticks where floor(t / c) advances (1/c of ticks).
                t = tick + s
                if np.floor((t + 1) / rain_cost) <= np.floor(t / rain_cost):
                    verdict[i] = RAIN_WAIT
    return verdict, target


@numba.njit(cache=True)
def _resolve(movers: np.ndarray, target: np.ndarray, keys: np.ndarray, tile: np.ndarray, alive: np.ndarray,
             blocked_for: np.ndarray, last_progress: np.ndarray, occupancy: np.ndarray, outdoors: np.ndarray,
             ghost_after: int, tick: int, counts: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decide who steps, who is blocked and who ghosts through; apply the steps in place.

    ``counts`` (int, one per tile) and ``first`` (int, one per tile) are zeroed / -1 scratch arrays, left
    as found. Returns each goer's outcome and, for ghosts, the agent it pushed through (-1 if none).
    """
    n = len(movers)
    blocked = np.zeros(n, dtype=np.bool_)
    for i in range(n):  # how many walkers leave each tile
        counts[tile[movers[i]]] += 1
    for i in range(n):
        t = target[i]
        if not outdoors[t]:
            # Held by someone who stays put (occupants that are themselves walking away do not count).
            blocked[i] = occupancy[t] > counts[t]
            # Several walkers into one indoor tile: the lowest key (then the lowest slot) goes first.
            j = first[t]
            if j < 0 or keys[i] < keys[j]:
                first[t] = i
    for i in range(n):
        t = target[i]
        if not outdoors[t] and first[t] != i:
            blocked[i] = True
    # A walker that stays blocks whoever wanted its tile; repeat until nothing changes.
    stuck = counts  # reuse: reset below, then mark the tiles of blocked walkers
    for i in range(n):
        stuck[tile[movers[i]]] = 0
        first[target[i]] = -1
    changed = True
    while changed:
        changed = False
        for i in range(n):
            if blocked[i]:
                stuck[tile[movers[i]]] = 1
        for i in range(n):
            t = target[i]
            if not blocked[i] and not outdoors[t] and stuck[t]:
                blocked[i] = True
                changed = True
    for i in range(n):
        stuck[tile[movers[i]]] = 0
    outcome = np.zeros(n, dtype=np.int8)
    occupant = np.full(n, -1, dtype=np.int64)
    for i in range(n):
        if blocked[i]:
            if blocked_for[movers[i]] + 1 >= ghost_after:
                outcome[i] = GHOSTED
                for s in range(len(alive)):  # who stands there (before anyone moves)
                    if alive[s] and tile[s] == target[i] and s != movers[i]:
                        occupant[i] = s
                        break
            else:
                outcome[i] = STAYED
    for i in range(n):
        s = movers[i]
        if outcome[i] == STAYED:
            blocked_for[s] += 1
        else:
            blocked_for[s] = 0
            occupancy[tile[s]] -= 1
            occupancy[target[i]] += 1
            tile[s] = target[i]
            last_progress[s] = tick
    return outcome, occupant

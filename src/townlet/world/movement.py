"""Movement: every walking agent takes one step along its distance field, vectorised, with collisions.

Indoor tiles hold one agent, outdoor tiles any number. A step into a tile held by an agent that is not
moving away is blocked; several agents stepping into one tile are ordered by patience plus jitter and
only the first moves. An agent blocked ``ghost_after`` times in a row takes one "ghost step" through
(counted and logged): the deadlock breaker. Rain makes outdoor steps cost extra ticks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from townlet.world.agents import Activity
from townlet.world.events import EventKind

if TYPE_CHECKING:
    from townlet.world.state import World


def walkers(world: World) -> np.ndarray:
    """Slots of agents with somewhere to walk to."""
    a = world.agents
    return np.flatnonzero(
        a.alive & (a.dest_field >= 0) & ((a.activity == Activity.MOVING) | (a.activity == Activity.QUEUED))
    )


def move(world: World) -> np.ndarray:
    """Advance walkers one step; return the slots of walkers standing at their destination."""
    a, g = world.agents, world.grid
    movers = walkers(world)
    if not len(movers):
        return movers
    here = a.tile[movers]
    direction = g.step[a.dest_field[movers], here]
    arrived = movers[direction == 0]
    lost = movers[direction < 0]
    for slot in lost:
        world.fail_step(int(slot), "unreachable")
    going = direction > 0
    movers, here, direction = movers[going], here[going], direction[going]
    if world.weather.is_raining and len(movers):
        # With cost c an outdoor walker steps on the ticks where floor(t / c) advances (1/c of ticks).
        t = world.tick + movers
        cost = world.weather.rain_cost
        dry = ~g.outdoors[here] | (np.floor((t + 1) / cost) > np.floor(t / cost))
        movers, here, direction = movers[dry], here[dry], direction[dry]
    if not len(movers):
        return arrived
    target = here + g.offsets[direction]
    blocked = _blocked(world, movers, here, target)
    ghosts = blocked & (a.blocked[movers] + 1 >= world.config.queues.ghost_after)
    for i in np.flatnonzero(ghosts):
        slot = int(movers[i])
        world.counters["ghost_steps"] += 1
        occupant = _occupant(world, int(target[i]), slot)
        world.emit(EventKind.GHOST_STEP, agent=slot, other=occupant, value=float(target[i]))
        if occupant >= 0:
            world.relationships.apply(world, occupant, slot, "ghost_pushed")
    stay = blocked & ~ghosts
    go = ~stay
    a.blocked[movers[stay]] += 1
    stepping, old, new = movers[go], here[go], target[go]
    a.blocked[stepping] = 0
    a.tile[stepping] = new
    a.last_progress[stepping] = world.tick
    np.subtract.at(world.occupancy, old, 1)
    np.add.at(world.occupancy, new, 1)
    return arrived


def _blocked(world: World, movers: np.ndarray, here: np.ndarray, target: np.ndarray) -> np.ndarray:
    g = world.grid
    indoor = ~g.outdoors[target]
    # Held by someone who stays put (occupants that are themselves walking away do not count).
    leaving = np.bincount(here, minlength=g.size)
    blocked = indoor & (world.occupancy[target] > leaving[target])
    if len(movers) > 1:
        keys = world.queues._priority(world, movers)
        order = np.lexsort((keys, target))
        t_sorted = target[order]
        dup = np.zeros(len(order), dtype=bool)
        dup[1:] = t_sorted[1:] == t_sorted[:-1]
        blocked[order[dup & indoor[order]]] = True
    # A walker that stays blocks whoever wanted its tile; repeat until nothing changes.
    for _ in range(len(movers)):
        stuck = np.zeros(g.size, dtype=bool)
        stuck[here[blocked]] = True
        chained = indoor & ~blocked & stuck[target]
        if not chained.any():
            break
        blocked |= chained
    return blocked


def _occupant(world: World, tile: int, other_than: int) -> int:
    a = world.agents
    hits = np.flatnonzero(a.alive & (a.tile == tile))
    hits = hits[hits != other_than]
    return int(hits[0]) if len(hits) else -1

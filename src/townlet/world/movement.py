"""Movement: every walking agent takes one step along its distance field, with collisions.

Indoor tiles hold one agent, outdoor tiles any number. A step into a tile held by an agent that is not
moving away is blocked; several agents stepping into one tile are ordered by patience plus jitter and
only the first moves. An agent blocked ``ghost_after`` times in a row takes one "ghost step" through
(counted and logged): the deadlock breaker. Rain makes outdoor steps cost extra ticks.

The per-agent work runs in two compiled kernels (:func:`plan` and :func:`_resolve`, numba) that loop over
the slots and the walkers once; the Python side draws the tie-break jitter, fails lost walkers and emits events, in the
same order as a vectorised implementation would, so the random streams and the results do not depend on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numba
import numpy as np

from townlet.world import scans
from townlet.world.agents import Activity
from townlet.world.events import EventKind
from townlet.world.fields import field_step
from townlet.world.queues import PATIENCE

if TYPE_CHECKING:
    from townlet.world.state import World

MOVING, QUEUED = int(Activity.MOVING), int(Activity.QUEUED)


def advance(world: World, lost: int, going: int) -> None:
    """Act on :func:`plan`'s rows of ``found``: fail the ``lost`` walkers, step the ``going`` (with collisions)."""
    found = world.found
    if lost:
        for slot in found[scans.LOST, :lost].tolist():
            world.fail_step(slot, "unreachable")
    if going:
        a = world.agents
        # Tie-break keys (patience plus jitter, as Queues._priority computes them), drawn when several step at once.
        draws = world.rng.world.random(going) if going > 1 else _NO_DRAWS
        ghosts = _resolve(
            going,
            draws,
            world.queues.tie_break(),
            (a.tile, a.alive, a.blocked, a.last_progress, a.personality),  # a Walkers, as a plain tuple
            world.occupancy,
            world.grid.outdoors,
            world.config.queues.ghost_after,
            world.tick,
            world.scratch_counts,
            world.scratch_slots,
            found,
            world.step_into,
        )
        for slot, other, tile in ghosts:
            world.counters["ghost_steps"] += 1
            world.emit(EventKind.GHOST_STEP, agent=slot, other=other, value=float(tile))
            if other >= 0:
                world.relationships.apply(world, other, slot, "ghost_pushed")


_NO_DRAWS = np.zeros(1)


class Walkers(NamedTuple):
    """The agent arrays a step reads and writes (``[C]`` each)."""

    tile: np.ndarray  # where each agent stands
    alive: np.ndarray
    blocked: np.ndarray  # ticks blocked in a row
    last_progress: np.ndarray  # the last tick each made progress
    personality: np.ndarray  # ``[C, traits]``: with a tie-break by patience, the more patient yield


@numba.njit(cache=True)
def plan(
    alive: np.ndarray,
    activity: np.ndarray,
    tile: np.ndarray,
    dest: np.ndarray,
    fields: tuple,
    offsets: np.ndarray,
    outdoors: np.ndarray,
    rain_cost: float,
    tick: int,
    found: np.ndarray,
    target: np.ndarray,
) -> tuple[int, int, int]:
    """Split the walkers (living, with a destination, moving or queued) into rows of ``found``; return the counts.

    Rows ``ARRIVED``, ``LOST`` (no path) and ``GOING``; ``target[i]`` is the tile the ``i``-th goer steps
    into. Outdoor walkers in the rain (``rain_cost > 0``) wait out the ticks on which they may not step.
    """
    counts = np.zeros(3, dtype=np.int64)
    rows = (scans.ARRIVED, scans.LOST, scans.GOING)
    for s in range(len(alive)):
        if not (alive[s] and dest[s] >= 0 and (activity[s] == MOVING or activity[s] == QUEUED)):
            continue
        here = tile[s]
        d = field_step(fields, dest[s], here)
        if d == 0:
            kind = 0
        elif d < 0:
            kind = 1
        else:
            kind = 2
            if rain_cost > 0.0 and outdoors[here]:
                # With cost c an outdoor walker steps on the ticks where floor(t / c) advances (1/c of ticks).
                t = tick + s
                if np.floor((t + 1) / rain_cost) <= np.floor(t / rain_cost):
                    continue
            target[counts[2]] = here + offsets[d]
        found[rows[kind], counts[kind]] = s
        counts[kind] += 1
    return counts[0], counts[1], counts[2]


@numba.njit(cache=True)
def _resolve(  # noqa: C901
    going: int,
    draws: np.ndarray,
    tie_break: tuple,
    walkers: tuple,
    occupancy: np.ndarray,
    outdoors: np.ndarray,
    ghost_after: int,
    tick: int,
    counts: np.ndarray,
    first: np.ndarray,
    found: np.ndarray,
    step_into: np.ndarray,
) -> list:
    """Decide who of the ``going`` walkers :func:`plan` found steps, who is blocked and who ghosts through.

    The steps are applied in place. The ``i``-th walker is ``found[GOING, i]``, stepping into ``step_into[i]``.
    Walkers into one indoor tile are ordered by a key: ``draws[i]`` (in [0, 1), one per walker) spread over
    ``±jitter``, plus the walker's patience when ``by_patience`` (``tie_break`` is ``(jitter, by_patience)``,
    :meth:`~townlet.world.queues.Queues.tie_break`); ``walkers`` is a :class:`Walkers` as a plain tuple.
    ``counts`` (int, one per tile) and ``first`` (int, one per tile) are zeroed / -1 scratch arrays, left as
    found. Returns the ghost steps as ``(slot, agent pushed through or -1, tile)``.
    """
    movers, target = found[scans.GOING, :going], step_into[:going]
    jitter, by_patience = tie_break
    w = Walkers(*walkers)
    tile, alive, blocked_for, last_progress, personality = w.tile, w.alive, w.blocked, w.last_progress, w.personality
    n = len(movers)
    keys = draws * (2.0 * jitter) - jitter  # the tie-break priority: the more patient yield
    if by_patience:
        for i in range(n):
            keys[i] = personality[movers[i], PATIENCE] + keys[i]
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
    ghosts = [(0, 0, 0) for _ in range(0)]
    for i in range(n):
        s = movers[i]
        if blocked[i] and blocked_for[s] + 1 < ghost_after:
            blocked_for[s] += 1
            continue
        if blocked[i]:
            pushed = -1
            for other in range(len(alive)):  # who stands there (before anyone moves)
                if alive[other] and tile[other] == target[i] and other != s:
                    pushed = other
                    break
            ghosts.append((s, pushed, target[i]))
        blocked_for[s] = 0
    for i in range(n):
        s = movers[i]
        if blocked_for[s] == 0:
            occupancy[tile[s]] -= 1
            occupancy[target[i]] += 1
            tile[s] = target[i]
            last_progress[s] = tick
    return ghosts

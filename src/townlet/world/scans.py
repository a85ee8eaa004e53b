"""Which agents a phase touches this tick: compiled scans over the slot arrays (and one over tiles).

At town sizes a scan over the slots in one compiled loop costs a fraction of the handful of numpy calls
it replaces; every slot scan yields slot indices in ascending order. The per-tick scans write them into a
row of the world's :attr:`~townlet.world.state.World.found` buffer and return how many (handing a fresh
array back to Python costs more than a small town's whole scan); the rows are named here.
"""

from __future__ import annotations

import numba
import numpy as np

from townlet.world.agents import Activity
from townlet.world.fields import field_dist

IDLE, MOVING, QUEUED, WAITING = (int(x) for x in (Activity.IDLE, Activity.MOVING, Activity.QUEUED, Activity.WAITING))
USING = int(Activity.USING)
NOT_CHATTING = 100  # tiles of distance a partner who is not socialising counts as (chat_partner prefers chatters)
# Rows of World.found: who asks for an object, who arrived / got lost / steps, who starts a use on arrival,
# who uses an affordance / lost its power or water / earns / is done.
ASKING, ARRIVED, LOST, GOING, STARTING, USERS, LOST_USE, EARNING, DONE = range(9)
FOUND_ROWS = 9


@numba.njit(cache=True)
def switching(alive: np.ndarray, actions: np.ndarray, option: np.ndarray, running: np.ndarray) -> np.ndarray:
    """Living agents whose external action is a real switch.

    A switch is neither the option running now nor the one running when the action was chosen (choosing
    the running option continues it).
    """
    out = np.empty(len(alive), dtype=np.int64)
    n = 0
    for s in range(len(alive)):
        c = actions[s]
        if alive[s] and c >= 0 and c != option[s] and c != running[s]:
            out[n] = s
            n += 1
    return out[:n]


@numba.njit(cache=True)
def asking(
    alive: np.ndarray,
    activity: np.ndarray,
    requested: np.ndarray,
    target_obj: np.ndarray,
    dest_field: np.ndarray,
    tile: np.ndarray,
    fields: tuple,
    radius: int,
    out: np.ndarray,
) -> int:
    """Walkers to an object, not yet queued or holding it, within ``radius`` steps of it (by their field)."""
    n = 0
    for s in range(len(alive)):
        if alive[s] and activity[s] == MOVING and not requested[s] and target_obj[s] >= 0:
            if field_dist(fields, dest_field[s], tile[s]) <= radius:
                out[n] = s
                n += 1
    return n


@numba.njit(cache=True)
def settle_arrivals(
    arrived: np.ndarray,
    activity: np.ndarray,
    target_obj: np.ndarray,
    requested: np.ndarray,
    dest_field: np.ndarray,
    step_done: np.ndarray,
    out: np.ndarray,
) -> int:
    """Finish the plain walks among walkers at their destination; write into ``out`` those to start their use.

    A walker to no object is done on arrival (idle, no destination, step done); one that holds or queued for
    its object is to start it (the caller checks each again as it goes). Returns how many are in ``out``.
    """
    n = 0
    for s in arrived:
        if activity[s] != MOVING:
            continue
        if target_obj[s] < 0:
            activity[s] = IDLE
            dest_field[s] = -1
            step_done[s] = True
        elif requested[s]:
            out[n] = s
            n += 1
    return n


@numba.njit(cache=True)
def finish_waits(
    alive: np.ndarray, activity: np.ndarray, wait_until: np.ndarray, tick: int, step_done: np.ndarray
) -> None:
    """Living agents whose wait ends this tick go idle with their step done."""
    for s in range(len(alive)):
        if alive[s] and activity[s] == WAITING and wait_until[s] <= tick:
            activity[s] = IDLE
            step_done[s] = True


@numba.njit(cache=True)
def waits_ending(alive: np.ndarray, activity: np.ndarray, wait_until: np.ndarray, tick: int) -> int:
    """How many living agents' waits end this tick (those :func:`finish_waits` sets idle, by the same test).

    (The test is written out in both loops: a compiled helper called per slot made each pass ~40x slower.)
    """
    n = 0
    for s in range(len(alive)):
        if alive[s] and activity[s] == WAITING and wait_until[s] <= tick:
            n += 1
    return n


@numba.njit(cache=True)
def nearest_free(spots: np.ndarray, occupancy: np.ndarray, here: int, width: int) -> int:
    """The first of ``spots`` (flat tiles) nearest ``here`` as the crow flies among those nobody stands on, or -1."""
    best, best_crow = -1, 0
    hx, hy = here % width, here // width
    for t in spots:
        if occupancy[t] != 0:
            continue
        crow = abs(t % width - hx) + abs(t // width - hy)
        if best < 0 or crow < best_crow:
            best, best_crow = t, crow
    return best


@numba.njit(cache=True)
def chat_partner(
    slot: int,
    alive: np.ndarray,
    tile: np.ndarray,
    activity: np.ndarray,
    target_aff: np.ndarray,
    place_index: np.ndarray,
    chat: np.ndarray,
    width: int,
    radius: int,
) -> int:
    """The partner :meth:`townlet.world.state.World.chat_partner` picks for ``slot``, -1 when nobody is around.

    Near: within ``radius`` tiles (Manhattan), or using or waiting in the same place. Among the near, the
    least distance plus ``NOT_CHATTING`` for those not on a chat affordance; ties go to the lowest slot.
    """
    here = tile[slot]
    x, y, place = here % width, here // width, place_index[here]
    best, best_score = -1, 0
    for s in range(len(alive)):
        if not alive[s] or s == slot:
            continue
        dist = abs(tile[s] % width - x) + abs(tile[s] // width - y)
        staying = activity[s] == USING or activity[s] == WAITING
        if not (dist <= radius or (place >= 0 and place_index[tile[s]] == place and staying)):
            continue
        aff = target_aff[s]
        score = dist + (0 if aff >= 0 and chat[aff] else NOT_CHATTING)
        if best < 0 or score < best_score:
            best, best_score = s, score
    return best

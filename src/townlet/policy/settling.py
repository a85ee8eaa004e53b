"""The policy phase's compiled scans: options settled to bodies, need points, and who decides this tick.

:func:`settle_scan` (need points, then :func:`unsettled`) runs between ticks and in the policy phase; there
:func:`decide_scan` adds, in the same call, :func:`builtin_scan`: the agents left to the built-in policy with
no option, and when there are none, :func:`pressing_needs` (whose hunger or fatigue interrupts them). Python
acts only on what they find (:class:`townlet.policy.controller.OptionController`, ``Simulation._decide``).
"""

from __future__ import annotations

import numba
import numpy as np

from townlet.observations.commitment import window_over
from townlet.policy.options import NEVER, Option, need_points
from townlet.world.agents import Activity
from townlet.world.needs import ENERGY, HUNGER

GET_FED, GET_CLEAN, SLEEP = int(Option.GET_FED), int(Option.GET_CLEAN), int(Option.SLEEP)
_IDLE, _MOVING = int(Activity.IDLE), int(Activity.MOVING)
STALLED, IDLE_ROW, CRITICAL = range(3)  # rows of OptionController.found


@numba.njit(cache=True)
def unsettled(
    alive: np.ndarray,
    activity: np.ndarray,
    option: np.ndarray,
    step_started: np.ndarray,
    critical_since: np.ndarray,
    tick: int,
    limit: int,
    found: np.ndarray,
) -> tuple[int, int, int]:
    """Counts of walkers past ``limit`` ticks, agents with an option and an idle body (or a stall), critical streaks.

    Their slots go into rows ``STALLED``, ``IDLE_ROW`` and ``CRITICAL`` of ``found``, ascending.
    """
    n = m = k = 0
    for s in range(len(alive)):
        if not alive[s]:
            continue
        walking_too_long = activity[s] == _MOVING and tick - step_started[s] > limit
        if walking_too_long:
            found[STALLED, n] = s
            n += 1
        if option[s] >= 0 and (activity[s] == _IDLE or walking_too_long):
            found[IDLE_ROW, m] = s
            m += 1
        if critical_since[s] != NEVER:
            found[CRITICAL, k] = s
            k += 1
    return n, m, k


@numba.njit(cache=True)
def settle_scan(
    alive: np.ndarray,
    needs: np.ndarray,
    activity: np.ndarray,
    option: np.ndarray,
    step_started: np.ndarray,
    critical_since: np.ndarray,
    above: np.ndarray,
    point_at: np.ndarray,
    found: np.ndarray,
    tick: int,
    points: bool,
    rules: tuple[float, float, int],
) -> tuple[int, int, int]:
    """Settle's scan in one call: :func:`need_points`, then :func:`unsettled` (same counts and rows).

    ``rules``: see :meth:`OptionController.scan_inputs`.
    """
    critical, level, limit = rules
    need_points(alive, needs, np.float32(critical), critical_since, np.float32(level), above, point_at, tick, points)
    return unsettled(alive, activity, option, step_started, critical_since, tick, limit, found)


@numba.njit(cache=True)
def newly_possible(
    slots: np.ndarray,
    rows: np.ndarray,
    possible: np.ndarray,
    critical_since: np.ndarray,
    point_at: np.ndarray,
    tick: int,
) -> None:
    """Store the option mask ``rows`` of critical ``slots`` in ``possible``.

    An option that became possible after the first tick of the slot's critical streak makes ``tick`` a need point.
    """
    for i in range(len(slots)):
        s = slots[i]
        grew = False
        for k in range(rows.shape[1]):
            grew |= rows[i, k] and not possible[s, k]
            possible[s, k] = rows[i, k]
        if grew and critical_since[s] != tick:
            point_at[s] = tick


@numba.njit(cache=True)
def decide_scan(
    alive: np.ndarray,
    needs: np.ndarray,
    activity: np.ndarray,
    option: np.ndarray,
    started: np.ndarray,
    step_started: np.ndarray,
    actions: np.ndarray,
    slot_phase: np.ndarray,
    streaks: tuple,
    scratch: tuple,
    tick: int,
    rules: tuple,
) -> tuple[int, int, int, bool, int]:
    """The policy phase's scans in one call: settle's (without need points), then :func:`builtin_scan`.

    ``streaks`` and the first three ``rules`` are :meth:`OptionController.scan_inputs`; then come
    ``options.interrupt_level``, this tick's interrupt turn, the commitment window and whether external
    actions are to be applied. ``scratch`` is ``(controller.found, free, due)``. Returns settle's stalled
    and idle counts, then :func:`builtin_scan`'s three results; those are ``(0, False, 0)``, not looked
    for, when something must be settled or external actions applied first (the caller does that, then
    calls :func:`builtin_scan`).
    """
    critical_since, above, point_at = streaks
    found, free, due = scratch
    critical, level, limit, interrupt_level, turn, commitment, external = rules
    stalled, idle, _ = settle_scan(
        alive, needs, activity, option, step_started, critical_since, above, point_at, found, tick, False,
        (critical, level, limit),
    )  # fmt: skip
    if stalled or idle or external:
        return stalled, idle, 0, False, 0
    levels = (np.float32(critical), np.float32(interrupt_level))
    n, any_builtin, pressing = builtin_scan(
        alive, actions, option, needs, started, slot_phase, tick, turn, levels, commitment, free, due
    )
    return 0, 0, n, any_builtin, pressing


@numba.njit(cache=True)
def builtin_scan(
    alive: np.ndarray,
    actions: np.ndarray,
    option: np.ndarray,
    needs: np.ndarray,
    started: np.ndarray,
    slot_phase: np.ndarray,
    tick: int,
    turn: int,
    levels: tuple[np.float32, np.float32],
    commitment: int,
    free: np.ndarray,
    due: np.ndarray,
) -> tuple[int, bool, int]:
    """The policy phase's scan of the agents left to the built-in policy (``actions < 0``), in one call.

    Those with no option running go into ``free`` (ascending). When there are none, :func:`pressing_needs`
    (same arguments) fills ``due`` at once. Returns ``(free count, whether any living agent is left to the
    built-in policy, pressing count)``; the pressing count is 0 while free agents have yet to choose (their
    choices change who is busy, so the caller looks again after).
    """
    n = 0
    any_builtin = False
    for s in range(len(alive)):
        if alive[s] and actions[s] < 0:
            any_builtin = True
            if option[s] < 0:
                free[n] = s
                n += 1
    if n or not any_builtin:
        return n, any_builtin, 0
    pressing = pressing_needs(alive, actions, needs, option, started, slot_phase, tick, turn, levels, commitment, due)
    return 0, True, pressing


@numba.njit(cache=True)
def pressing_needs(
    alive: np.ndarray,
    actions: np.ndarray,
    needs: np.ndarray,
    option: np.ndarray,
    started: np.ndarray,
    slot_phase: np.ndarray,
    tick: int,
    turn: int,
    levels: tuple[np.float32, np.float32],
    commitment: int,
    out: np.ndarray,
) -> int:
    """Living agents left to the built-in policy whose hunger or fatigue makes them reconsider (into ``out``).

    ``levels`` is ``(critical, level)``. Busy agents (an option other than eating or sleeping) with such a
    need at ``critical`` reconsider at once; at ``level``, those busy with anything but washing reconsider on
    their slot's turn (``slot_phase`` equal to ``turn``) once their commitment window is over at ``tick``.
    Returns how many, ascending in ``out``.
    """
    critical, level = levels
    n = 0
    for s in range(len(alive)):
        if not alive[s] or actions[s] >= 0:
            continue
        o = option[s]
        if o < 0 or o == GET_FED or o == SLEEP:
            continue
        pressing = max(needs[s, HUNGER], needs[s, ENERGY])
        if pressing >= critical or (
            pressing >= level and slot_phase[s] == turn and o != GET_CLEAN and window_over(tick, started[s], commitment)
        ):
            out[n] = s
            n += 1
    return n

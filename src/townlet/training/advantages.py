"""Per-agent returns and advantages (GAE) over semi-MDP transitions, each with its own discount.

A transition j lasted ``k_j`` ticks: its reward is ``R_j = sum_i gamma**i r_i`` over those ticks and its
discount ``d_j = gamma**k_j``. The TD error bootstraps with the value at the agent's next decision:

    delta_j = R_j + d_j * V_next_j - V_j
    A_j     = delta_j + d_j * lambda * A_next(j)

where ``next(j)`` is the same agent's following transition (``next_index``). An exit has ``V_next = 0``; an
episode cut at the horizon bootstraps with ``V(final observation)``; either way nothing flows back past the
end of an agent's episode (``ends``), and a newcomer in the slot starts a chain of its own. Lambda applies per
decision (not per tick): it trades bias for variance between decisions. With ``k = 1`` everywhere this is the
textbook per-step GAE.
"""

from __future__ import annotations

import numba
import numpy as np


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    discounts: np.ndarray,
    next_values: np.ndarray,
    ends: np.ndarray,
    next_index: np.ndarray,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and returns of ``n`` transitions.

    Args:
        rewards: ``[n]`` discounted reward of each transition's ticks.
        values: ``[n]`` value at each transition's decision.
        discounts: ``[n]`` ``gamma ** ticks`` of each transition.
        next_values: ``[n]`` the value each bootstraps with (0 after an exit).
        ends: ``[n]`` the agent's episode ended with the transition (exit or horizon).
        next_index: ``[n]`` row of the same agent's next transition, always later in the arrays (-1: none).
        lam: GAE lambda, per decision.

    Returns:
        ``(advantages, returns)``, both ``float32[n]``; returns are ``advantages + values``.
    """
    adv = _gae(
        np.asarray(rewards, np.float64),
        np.asarray(values, np.float64),
        np.asarray(discounts, np.float64),
        np.asarray(next_values, np.float64),
        np.asarray(ends, np.bool_),
        np.asarray(next_index, np.int64),
        float(lam),
    )
    return adv.astype(np.float32), (adv + values).astype(np.float32)


@numba.njit(cache=True)
def _gae(rewards, values, discounts, next_values, ends, next_index, lam):
    n = len(rewards)
    adv = np.zeros(n)
    for j in range(n - 1, -1, -1):
        delta = rewards[j] + discounts[j] * next_values[j] - values[j]
        following = next_index[j]
        carry = adv[following] if following >= 0 and not ends[j] else 0.0
        adv[j] = delta + discounts[j] * lam * carry
    return adv

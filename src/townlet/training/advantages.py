"""Per-agent returns and advantages (GAE) over a rollout of many agent slots at once.

Rollouts are arrays shaped ``[T, B]`` where B counts agent slots across towns. An agent's episode ends at
its exit (``done``); a slot that holds nobody is ``valid = False``; a newcomer in a slot starts a fresh
episode, so nothing is bootstrapped across an exit or a spawn.
"""

from __future__ import annotations

import numpy as np


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    dones: np.ndarray,
    valid: np.ndarray,
    last_values: np.ndarray,
    gamma: float,
    lam: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimates and returns.

    Args:
        rewards: ``[T, B]`` reward received after acting at step t.
        values: ``[T, B]`` value estimate at step t.
        dones: ``[T, B]`` the agent's episode ended at step t (no bootstrap past it).
        valid: ``[T, B]`` a living agent acted in this slot at step t.
        last_values: ``[B]`` value of the state after the last step (bootstrap for unfinished episodes).
        gamma: Discount.
        lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, both ``[T, B]`` float32; zero where not valid.
    """
    steps = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=np.float32)
    running = np.zeros(rewards.shape[1], dtype=np.float32)
    next_values = last_values.astype(np.float32)
    next_valid = np.ones(rewards.shape[1], dtype=bool)
    for t in range(steps - 1, -1, -1):
        cont = (1.0 - dones[t].astype(np.float32)) * next_valid
        delta = rewards[t] + gamma * next_values * cont - values[t]
        running = delta + gamma * lam * cont * running
        running = np.where(valid[t], running, 0.0).astype(np.float32)
        adv[t] = running
        next_values = values[t]
        next_valid = valid[t]
    returns = np.where(valid, adv + values, 0.0).astype(np.float32)
    return adv, returns

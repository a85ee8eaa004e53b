"""Running mean and standard deviation of rewards (Welford's algorithm, merged a batch per tick)."""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def merge_sums(count: int, mean: float, m2: float, n: int, total: float, total_sq: float) -> tuple[int, float, float]:
    """``(count, mean, M2)`` with a batch of ``n`` values (their sum and sum of squares) folded in.

    Chan et al.'s merge of two states; a batch of no values leaves them as they are. Compiled, so the reward
    kernels fold each tick's rewards in where they sum them (:func:`townlet.rewards.terms._guardrails`).
    """
    if n <= 0:
        return count, mean, m2
    batch_mean = total / n
    batch_m2 = max(total_sq - total * batch_mean, 0.0)
    merged = count + n
    delta = batch_mean - mean
    mean += delta * n / merged
    m2 += batch_m2 + delta * delta * count * n / merged
    return merged, mean, m2


class RunningStats:
    """Count, mean and variance of every value seen so far, updated a batch at a time.

    Attributes:
        count: Values seen.
        mean: Their mean.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0

    def update(self, values: np.ndarray) -> None:
        """Fold a batch of values in."""
        batch = values.astype(np.float64)
        self.update_sums(len(batch), float(batch.sum()), float(np.dot(batch, batch)))

    def update_sums(self, n: int, total: float, total_sq: float) -> None:
        """Fold in a batch given by its size, sum and sum of squares (Chan et al.'s merge of two states).

        The sums may run over a whole slot array whose empty slots hold 0: zeros add nothing to them.
        """
        self.count, self.mean, self._m2 = merge_sums(self.count, self.mean, self._m2, n, total, total_sq)

    @property
    def var(self) -> float:
        """Population variance (0 before two values)."""
        return self._m2 / self.count if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        """Population standard deviation."""
        return math.sqrt(self.var)

    def as_dict(self) -> dict[str, float]:
        """``{"count", "mean", "std"}`` for reports."""
        return {"count": self.count, "mean": self.mean, "std": self.std}

    def state(self) -> tuple[int, float, float]:
        """The raw state (for hashing and snapshots)."""
        return self.count, self.mean, self._m2

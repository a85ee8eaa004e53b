"""Running mean and standard deviation of rewards (Welford's algorithm, merged a batch per tick)."""

from __future__ import annotations

import math

import numpy as np


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
        if n <= 0:
            return
        batch_mean = total / n
        batch_m2 = max(total_sq - total * batch_mean, 0.0)
        count = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / count
        self._m2 += batch_m2 + delta * delta * self.count * n / count
        self.count = count

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

"""Batch worker processes: one pending command at a time, and a worker's failure raised with its traceback."""

from __future__ import annotations

import os

import numpy as np
import pytest

from townlet.env import BatchedTowns, batched, workers
from townlet.env.workers import WorkerError

SIGNALS = [True, False] if workers.SHARED_COUNTERS else [False]


def test_a_second_send_before_gather_is_refused() -> None:
    """A second send before gather raises a clear error; the pending answer is still gathered after."""
    batch = BatchedTowns(2, variant="compact", overrides={"env.horizon": 50}, workers=1)
    try:
        batch.reset(seed=3)
        pool = batch._pool
        assert pool is not None
        pool.send("hashes", 0)
        with pytest.raises(RuntimeError, match="'hashes' is still pending; call gather"):
            pool.send("step", 0)
        hashes = pool.gather()
        assert len(hashes) == 1 and hashes == batch.state_hashes()[1:]
        with pytest.raises(RuntimeError, match="nothing is pending"):
            pool.gather()
    finally:
        batch.close()
    with pytest.raises(RuntimeError, match="the pool is closed"):
        pool.send("step", 0)


@pytest.mark.parametrize("shared_counters", SIGNALS, ids=["counters", "pipes"][-len(SIGNALS) :])
def test_a_worker_failure_raises_with_its_traceback(shared_counters: bool, monkeypatch) -> None:
    """A step that raises inside a worker reaches the caller as WorkerError with the remote traceback."""
    monkeypatch.setattr(workers, "SHARED_COUNTERS", shared_counters)
    parent = os.getpid()
    real = batched.step_towns

    def failing(*args, **kwargs):
        if os.getpid() != parent:  # only in the forked worker
            raise ValueError("town exploded on purpose")
        return real(*args, **kwargs)

    monkeypatch.setattr(batched, "step_towns", failing)  # the worker imports it after the fork
    batch = BatchedTowns(2, variant="compact", overrides={"env.horizon": 50}, workers=1)
    try:
        batch.reset(seed=3)
        with pytest.raises(WorkerError) as caught:
            batch.step(np.full((2, batch.capacity), -1))
        message = str(caught.value)
        assert "batch worker 0 (towns 1..1) failed in 'step'" in message
        assert "Traceback" in message and "ValueError: town exploded on purpose" in message
        with pytest.raises(RuntimeError, match="the pool is closed"):
            batch.step(np.full((2, batch.capacity), -1))
    finally:
        batch.close()

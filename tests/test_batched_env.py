"""Tests for the batched interface: identical to single envs with the same seeds, autoreset, and the bench."""

from __future__ import annotations

import json

import numpy as np
import pytest

from env_support import LIFECYCLE
from townlet.cli.main import main
from townlet.env import BatchedTowns, parallel_env, workers
from townlet.env.speed import random_masked


@pytest.mark.parametrize(("variant", "level"), [("full", "options"), ("compact", "options"), ("hybrid", "primitives")])
def test_batched_towns_match_single_envs_with_the_same_seeds(variant: str, level: str) -> None:
    """Town i of a batch reset with seed s steps exactly like a single env reset with seed s + i.

    With option actions the batch observes its towns in one compiled call (``StackedObserver``); with
    primitive actions each town observes on its own.
    """
    overrides = {"env.horizon": 400, "env.action_level": level, **LIFECYCLE}
    batch = BatchedTowns(3, variant=variant, overrides=overrides)
    assert (batch.observer is None) == (level == "primitives")
    obs, masks = batch.reset(seed=10)
    singles = [parallel_env(variant=variant, overrides=overrides) for _ in range(3)]
    for i, env in enumerate(singles):
        env.reset(seed=10 + i)
    rng = np.random.default_rng(0)
    exits = 0
    for step in range(300):
        actions = np.where(batch.alive, random_masked(rng, masks), -1)
        obs, masks, rewards, terminated, truncated = batch.step(actions)
        exits += int(terminated.sum())
        for i, env in enumerate(singles):
            # seat s is slot s; an empty seat's action (the no-op) is ignored either way
            single_obs, single_rewards, _, _, infos = env.step(
                {seat: int(actions[i, s]) if actions[i, s] >= 0 else env.noop for s, seat in enumerate(env.agents)}
            )
            for s, seat in enumerate(env.agents):
                if batch.alive[i, s]:
                    assert np.array_equal(obs[i, s], single_obs[seat]["observation"])
                    assert np.array_equal(masks[i, s], single_obs[seat]["action_mask"])
                assert rewards[i, s] == np.float32(single_rewards[seat]) or batch.arrived[i, s]
            assert int(terminated[i].sum()) == sum("exit_reason" in info for info in infos.values())
        if step % 30 == 29:  # the whole state (tens of ms a hash); observations and rewards are checked every step
            assert [env.sim.state_hash() for env in singles] == batch.state_hashes()
    assert exits >= 3


# Step signals: shared counters where the platform allows them (x86-64), and the pipes (everywhere).
SIGNALS = [True, False] if workers.SHARED_COUNTERS else [False]


@pytest.mark.parametrize("shared_counters", SIGNALS, ids=["counters", "pipes"][-len(SIGNALS) :])
def test_worker_processes_give_the_same_results_as_one_process(shared_counters: bool, monkeypatch) -> None:
    """A batch stepped by this process and two forked workers matches the in-process batch exactly."""
    monkeypatch.setattr(workers, "SHARED_COUNTERS", shared_counters)
    overrides = {"env.horizon": 60, **LIFECYCLE}
    local = BatchedTowns(3, variant="hybrid", overrides=overrides)
    spread = BatchedTowns(3, variant="hybrid", overrides=overrides, workers=2)
    try:
        local.reset(seed=4)
        spread.reset(seed=4)
        rng = np.random.default_rng(1)
        for _ in range(80):  # crosses the horizon: both autoreset
            actions = np.where(local.alive, random_masked(rng, local.masks), -1)
            local.step(actions)
            spread.step(actions)
            for name in ("obs", "masks", "rewards", "alive", "terminated", "truncated", "reset_towns"):
                assert np.array_equal(local.arrays[name], spread.arrays[name]), name
        assert local.state_hashes() == spread.state_hashes() and spread.invalid_actions == 0
    finally:
        spread.close()


def test_autoreset_starts_the_next_episode_with_the_next_seed() -> None:
    """At the horizon a town is truncated, its last observations kept, and it restarts with seed s + i + N."""
    batch = BatchedTowns(2, variant="compact", overrides={"env.horizon": 10})
    batch.reset(seed=5)
    idle = np.where(batch.alive, 6, -1)
    for _ in range(9):
        batch.step(idle)
    before = batch.obs.copy()
    _, _, _, _, truncated = batch.step(idle)
    assert batch.reset_towns.all() and truncated[:, :8].all()
    assert not np.array_equal(batch.final_obs, before) and batch.final_obs[:, 8:].sum() == 0
    single = parallel_env(variant="compact", overrides={"env.horizon": 10})
    first, _ = single.reset(seed=5 + 1 + 2)
    assert np.array_equal(batch.obs[1, 0], first["seat_0"]["observation"])


def test_actions_must_be_stacked_per_town() -> None:
    """Actions of the wrong shape are refused with a clear message."""
    batch = BatchedTowns(2, variant="compact")
    batch.reset()
    with pytest.raises(ValueError, match="shape"):
        batch.step(np.zeros((2, 3), dtype=np.int64))


def test_bench_env_reports_steps_per_second_and_the_batched_speedup(capsys) -> None:
    """`townlet bench --env` keeps the sim figures and adds env steps/s and batched vs looped agent-steps/s."""
    code = main(
        [
            "bench",
            "--ticks",
            "50",
            "--warmup",
            "10",
            "--repeat",
            "1",
            "--env",
            "--variant",
            "compact",
            "--towns",
            "2",
            "--env-steps",
            "20",
            "--workers",
            "2",
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and {"ticks_per_s", "agent_steps_per_s", "phase_ms", "peak_rss_mb"} <= set(result)
    single, batched = result["env"]["single"][0], result["env"]["batched"][0]
    assert single["variant"] == "compact" and single["env_steps_per_s"] > 0 and single["invalid_actions"] == 0
    assert batched["towns"] == 2 and batched["speedup"] > 0 and batched["workers_speedup"] > 0
    capacity = result["env"]["parallel_capacity"]  # a plain CPU job in 3 processes against 1 (ideal: 3)
    assert capacity["processes"] == 3 and all(0.5 < capacity[k] < 3.5 for k in ("before", "after"))

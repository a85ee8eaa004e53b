"""The env's decision mode (the semi-MDP): steps last until someone must decide; rewards summed over the ticks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from env_support import LIFECYCLE, SHORT, masked_actions
from townlet.config import load_config
from townlet.env import BatchedTowns, TownCore, parallel_env
from townlet.env.speed import random_masked
from townlet.sim import Simulation


@pytest.mark.parametrize("extra", [{}, LIFECYCLE], ids=["plain", "lifecycle"])
def test_parallel_api_test_passes_in_decision_mode(extra: dict) -> None:
    """PettingZoo's parallel_api_test and parallel_seed_test pass with decisions="points"."""
    env = parallel_env(overrides={**SHORT, **extra}, decisions="points")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(env, num_cycles=300)
    parallel_seed_test(lambda: parallel_env(overrides={**SHORT, **extra}, decisions="points"), num_cycles=100)


def test_a_step_lasts_until_someone_must_decide_and_sums_the_rewards() -> None:
    """Each step's rewards are the per-tick rewards summed over its ticks; the discounted sum uses gamma per tick."""
    env = parallel_env(overrides={**SHORT, **LIFECYCLE}, decisions="points", gamma=0.9)
    twin = Simulation(load_config(overrides=[f"{k}={v}" for k, v in {**SHORT, **LIFECYCLE}.items()]), seed=3)
    obs, infos = env.reset(seed=3)
    assert all(info["must_decide"] for info in infos.values()), "everybody chooses first"
    rng = np.random.default_rng(0)
    lengths, exits = [], 0
    while env.agents:
        actions = masked_actions(env, obs, rng)
        ticks_before = env.sim.tick
        names = list(env.agents)
        slot_of = {n: i for i, n in enumerate(names) if env.person(n) is not None}  # occupied seats: seat i = slot i
        obs, rewards, terms, truncs, infos = env.step(actions)
        k = env.sim.tick - ticks_before
        lengths.append(k)
        # replay the same ticks on a twin town: the env's actions, then "continue" for the rest of the step
        per_tick = []
        twin_actions = np.full(twin.world.agents.capacity, -1)
        for n, s in slot_of.items():
            twin_actions[s] = actions[n]
        for i in range(k):
            if i > 0:
                twin_actions = np.where(twin.world.agents.alive, twin.world.agents.option, -1)
            twin.step(twin_actions)
            per_tick.append(twin.rewards.last.copy())
        for n, s in slot_of.items():
            total = sum(float(r[s]) for r in per_tick)
            discounted = sum(0.9**i * float(r[s]) for i, r in enumerate(per_tick))
            assert rewards[n] == pytest.approx(total, abs=1e-5)
            assert infos[n]["discounted_reward"] == pytest.approx(discounted, abs=1e-5)
            assert infos[n]["ticks"] == k
        left = sum("exit_reason" in info for info in infos.values())
        exits += left
        if env.agents and not left and not any(truncs.values()):
            deciding = [n for n in env.agents if infos[n]["must_decide"]]
            assert deciding, "a step ends when somebody must decide (or leaves, or at the horizon)"
            for n in env.agents:
                if not infos[n]["must_decide"]:
                    assert obs[n]["action_mask"].sum() == 1, "the others may only continue"
        for name in ("alive", "needs", "tile", "option", "wallet"):  # (grid field indices depend on history)
            assert np.array_equal(getattr(twin.world.agents, name), getattr(env.sim.world.agents, name)), name
    assert max(lengths) > 1 and sum(lengths) == 300 and exits >= 1
    assert len(lengths) < 0.6 * 300, "far fewer steps than ticks"


def test_agents_that_need_not_decide_continue_whatever_they_send() -> None:
    """In decision mode an action for an agent that is not at a decision point is neither taken nor counted."""
    env = parallel_env(overrides=SHORT, decisions="points")
    obs, infos = env.reset(seed=1)
    obs, *_, infos = env.step({a: 6 for a in env.agents})
    for _ in range(20):
        waiting = [a for a in env.agents if not infos[a]["must_decide"]]
        options = {a: int(env.sim.world.agents.option[env.possible_agents.index(a)]) for a in waiting}
        obs, _, _, _, infos = env.step(
            {a: 4 if a in waiting else int(np.flatnonzero(obs[a]["action_mask"])[0]) for a in env.agents}
        )
        for a in waiting:
            now = int(env.sim.world.agents.option[env.possible_agents.index(a)])
            assert now == options[a] or infos[a]["must_decide"] or now == -1
    assert env.sim.invalid_actions == 0


def test_batched_decision_mode_matches_single_towns_and_worker_processes() -> None:
    """Town i of a decision-mode batch is TownCore(seed s + i); two worker processes give identical arrays."""
    overrides = {"env.horizon": 500, **LIFECYCLE}
    local = BatchedTowns(3, overrides=overrides, decisions="points", gamma=0.95)
    spread = BatchedTowns(3, overrides=overrides, decisions="points", gamma=0.95, workers=1)
    singles = [TownCore(local.loaded, decisions="points", gamma=0.95) for _ in range(3)]
    try:
        local.reset(seed=20)
        spread.reset(seed=20)
        for i, core in enumerate(singles):
            core.reset(20 + i)
        rng = np.random.default_rng(2)
        for _ in range(150):
            actions = np.where(local.alive, random_masked(rng, local.masks), -1)
            local.step(actions)
            spread.step(actions)
            for name in ("obs", "masks", "rewards", "discounted", "deciding", "ticks", "terminated", "need_peak"):
                assert np.array_equal(local.arrays[name], spread.arrays[name]), name
            for i, core in enumerate(singles):
                core.step(actions[i])
                assert core.last_ticks == local.ticks[i]
                assert np.array_equal(core.buffers.reward, local.rewards[i])
                if core.done:  # the batch has started its next episode already
                    core.reset(20 + i + 3)
                assert np.array_equal(core.buffers.deciding, local.deciding[i])
        assert local.ticks.max() > 1 and local.state_hashes() == spread.state_hashes()
    finally:
        spread.close()


def test_the_per_tick_mode_still_steps_one_tick_with_everybody_deciding() -> None:
    """decisions="ticks" (the default): a step is one tick, every living agent is asked, rewards are the tick's."""
    batch = BatchedTowns(2, overrides=SHORT)
    batch.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        batch.step(np.where(batch.alive, random_masked(rng, batch.masks), -1))
        assert (batch.ticks == 1).all() and np.array_equal(batch.deciding, batch.alive)
        assert np.array_equal(batch.discounted, batch.rewards)


def test_decision_mode_is_refused_with_a_clear_error_for_unknown_values() -> None:
    """An unknown decisions value or a gamma outside [0, 1] is refused by name."""
    with pytest.raises(ValueError, match="decisions must be one of ticks, points"):
        parallel_env(decisions="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gamma"):
        BatchedTowns(1, decisions="points", gamma=1.5)

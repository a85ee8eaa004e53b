"""PettingZoo conventions with agents coming and going: fixed seats, PettingZoo's test suite, seeds, pickling."""

from __future__ import annotations

import contextlib
import copy
import io
import pickle
import warnings

import numpy as np
import pytest
from pettingzoo.test import api_test, max_cycles_test, parallel_api_test, render_test
from pettingzoo.utils.conversions import parallel_to_aec

import townlet.env as townlet_env
from env_support import churn, masked_actions
from townlet.env import BatchedTowns, parallel_env
from townlet.env.speed import random_masked
from townlet.sim import Simulation

CHURN = churn(300)
SEATS = [f"seat_{i}" for i in range(8)]
MODES = ["ticks", "points"]


def churn_env(**kwargs):
    """The compact town with frequent exits."""
    return parallel_env(variant="compact", overrides=CHURN, **kwargs)


class ChurnModule:
    """What PettingZoo's max_cycles_test wants: a module-like object with ``parallel_env`` and ``env``."""

    @staticmethod
    def parallel_env(**kwargs):
        """The parallel env with churn."""
        return churn_env(**kwargs)

    @staticmethod
    def env(**kwargs):
        """The AEC env with churn."""
        return townlet_env.env(variant="compact", overrides=CHURN, **kwargs)


@pytest.mark.parametrize("decisions", MODES)
def test_parallel_api_test_passes_with_churn_and_seats_stay_fixed(decisions: str) -> None:
    """parallel_api_test passes with frequent exits; possible_agents never changes; newcomers took seats."""
    env = churn_env(decisions=decisions)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parallel_api_test(env, num_cycles=300)
    assert env.possible_agents == SEATS and env.exits >= 3 and env.sim.lifecycle.arrived >= 2
    assert env.scripted_fallbacks == 0 and env.invalid_actions == 0


@pytest.mark.parametrize("decisions", MODES)
def test_parallel_to_aec_passes_the_aec_api_test_with_churn(decisions: str) -> None:
    """parallel_to_aec of the env passes PettingZoo's AEC api_test while agents leave and arrive."""
    env = churn_env(decisions=decisions)
    api_test(parallel_to_aec(env), num_cycles=300)
    assert env.exits >= 1 and env.possible_agents == SEATS


@pytest.mark.parametrize("decisions", MODES)
def test_same_seed_and_actions_give_the_same_episode_step_after_step(decisions: str) -> None:
    """A multi-step seed test: two envs reset with one seed stay identical for a whole churning episode."""
    envs = [churn_env(decisions=decisions) for _ in range(2)]
    outs = [env.reset(seed=11) for env in envs]
    rng = np.random.default_rng(0)
    steps = exits = 0
    while envs[0].agents:
        actions = masked_actions(envs[0], outs[0][0], rng)
        outs = [env.step(dict(actions)) for env in envs]
        (obs_a, *rest_a), (obs_b, *rest_b) = outs
        assert obs_a.keys() == obs_b.keys()
        for seat in obs_a:
            for key in ("observation", "action_mask"):
                assert np.array_equal(obs_a[seat][key], obs_b[seat][key])
        assert rest_a == rest_b
        steps += 1
        exits += sum("exit_reason" in info for info in rest_a[-1].values())
    assert steps > 50 and exits >= 3 and envs[0].sim.state_hash() == envs[1].sim.state_hash()


def test_max_cycles_test_passes() -> None:
    """PettingZoo's max_cycles_test passes: max_cycles truncates every seat, parallel and AEC."""
    max_cycles_test(ChurnModule)
    env = churn_env(max_cycles=5)
    env.reset(seed=0)
    for step in range(5):
        _, _, _, truncs, _ = env.step(dict.fromkeys(env.agents, 6))
        assert all(truncs.values()) == (step == 4)
    assert env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})


def test_render_test_passes_with_the_human_mode_printing_the_town() -> None:
    """render_test passes for human, rgb_array and ansi; human prints the text frame every step."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        render_test(lambda render_mode=None: ChurnModule.env(render_mode=render_mode))
        env = churn_env(render_mode="human")
        env.reset(seed=0)
        env.step(dict.fromkeys(env.agents, 6))
    frames = out.getvalue().count("tick ")
    assert frames >= 2 and "tick 1  day 0" in out.getvalue()
    assert env.metadata["name"] == "townlet_v1" and env.metadata["render_modes"] == ["human", "rgb_array", "ansi"]
    assert env.metadata["is_parallelizable"] and env.metadata["render_fps"] > 0


def test_reset_without_a_seed_draws_from_entropy_and_continues_a_given_seed() -> None:
    """Fresh envs (and copies of one) start different towns; after reset(seed) the sequence is reproducible."""
    first = churn_env()
    twin = copy.deepcopy(first)
    first.reset()
    twin.reset()
    assert first.seed_used != twin.seed_used and first.sim.state_hash() != twin.sim.state_hash()
    a, b = churn_env(), churn_env()
    a.reset(seed=3)
    b.reset(seed=3)
    a.reset()
    b.reset()
    assert a.seed_used == b.seed_used != 3


@pytest.mark.parametrize("decisions", MODES)
def test_a_pickled_or_copied_env_steps_on_identically(decisions: str) -> None:
    """pickle.loads(pickle.dumps(env)) and deepcopy mid-episode continue exactly like the original."""
    env = churn_env(decisions=decisions)
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(1)
    for _ in range(40):
        obs, *_ = env.step(masked_actions(env, obs, rng))
    copies = [pickle.loads(pickle.dumps(env)), copy.deepcopy(env)]
    assert all(c.sim.state_hash() == env.sim.state_hash() for c in copies)
    exits = 0
    while env.agents:
        actions = masked_actions(env, obs, rng)
        outs = [e.step(dict(actions)) for e in (env, *copies)]
        obs = outs[0][0]
        exits += sum("exit_reason" in info for info in outs[0][-1].values())
        for out in outs[1:]:
            assert out[1:] == outs[0][1:]
            assert all(np.array_equal(out[0][s]["observation"], obs[s]["observation"]) for s in obs)
    assert exits >= 2 and all(c.sim.state_hash() == env.sim.state_hash() for c in copies)


def test_batched_towns_and_a_simulation_pickle_and_step_on_identically() -> None:
    """BatchedTowns (in process) and Simulation round-trip through pickle; worker batches refuse clearly."""
    batch = BatchedTowns(2, variant="hybrid", overrides=CHURN)
    batch.reset(seed=2)
    rng = np.random.default_rng(2)
    for _ in range(20):
        batch.step(np.where(batch.alive, random_masked(rng, batch.masks), -1))
    copies = [pickle.loads(pickle.dumps(batch)), copy.deepcopy(batch)]
    for _ in range(150):
        actions = np.where(batch.alive, random_masked(rng, batch.masks), -1)
        for b in (batch, *copies):
            b.step(actions)
        for c in copies:
            assert np.array_equal(c.obs, batch.obs) and np.array_equal(c.rewards, batch.rewards)
    assert all(c.state_hashes() == batch.state_hashes() for c in copies)
    sim = Simulation(townlet_env.env_config(overrides=CHURN), seed=4)
    sim.run(100)
    twin = pickle.loads(pickle.dumps(sim))
    sim.run(200)
    twin.run(200)
    assert sim.state_hash() == twin.state_hash() and twin.world.hooks.stats == sim.world.hooks.stats
    pooled = BatchedTowns(2, variant="compact", workers=1)
    try:
        with pytest.raises(TypeError, match="worker processes"):
            pickle.dumps(pooled)
    finally:
        pooled.close()


def test_an_agent_beyond_the_seats_is_driven_by_the_script_with_a_warning() -> None:
    """A console spawn into a full town gets no seat: the scripted routine drives it, warned and counted."""
    env = churn_env()
    env.reset(seed=0)
    env.sim.enqueue(lambda w: env.sim.lifecycle.arrive())
    with pytest.warns(RuntimeWarning, match="beyond the env's 8 seats"):
        env.step(dict.fromkeys(env.agents, 6))
        env.step(dict.fromkeys(env.agents, 6))
    assert env.scripted_fallbacks == 1 and env.possible_agents == SEATS
    roomy = churn_env(seats=9)
    assert roomy.possible_agents == [*SEATS, "seat_8"]
    obs, infos = roomy.reset(seed=0)
    assert infos["seat_8"] == {"person": None} and obs["seat_8"]["action_mask"].sum() == 1
    with pytest.raises(ValueError, match="seats"):
        churn_env(seats=99)

"""The adapters of townlet.env.wrappers: seat episodes, flat observations with masks, vector envs over towns."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from env_support import churn
from townlet.env import parallel_env
from townlet.env.wrappers import SeatEpisodes, SeatRows, TownsVectorEnv, action_masks, require
from townlet.lifecycle.exits import REASONS
from townlet.policy.options import Option

CHURN = churn(200)


def flat_actions(obs: dict, rng: np.random.Generator) -> dict:
    """A random allowed action per seat, read from the mask at the end of each flat observation."""
    return {seat: int(rng.choice(np.flatnonzero(action_masks(o, 7)))) for seat, o in obs.items()}


def test_seat_episodes_end_each_stay_and_each_empty_spell_with_a_termination() -> None:
    """A seat terminates the step its occupant leaves (terminal reward) and the step a newcomer sits down."""
    raw = parallel_env(variant="compact", overrides=CHURN)
    env = SeatEpisodes(raw)
    obs, _ = env.reset(seed=3)
    space = env.observation_space("seat_0")
    assert space.shape == (raw.core.obs_size + 7,) and all(space.contains(o) for o in obs.values())
    rng = np.random.default_rng(0)
    stays, spells, returns = 0, 0, {s: 0.0 for s in env.possible_agents}
    while env.agents:
        obs, rewards, terms, truncs, infos = env.step(flat_actions(obs, rng))
        assert set(obs) == set(env.possible_agents) and all(space.contains(o) for o in obs.values())
        for seat, info in infos.items():
            returns[seat] += rewards[seat]
            assert terms[seat] == ("exit_reason" in info or "arrived" in info)
            if "exit_reason" in info:
                stays += 1
                assert rewards[seat] < 0 and info["episode"]["r"] == pytest.approx(returns[seat])
                assert not obs[seat][:-7].any() and action_masks(obs[seat], 7).tolist() == [
                    k == Option.IDLE for k in range(7)
                ]
            elif "arrived" in info:
                spells += 1
                assert rewards[seat] == 0.0 and obs[seat][:-7].any()
            if terms[seat] or truncs[seat]:
                returns[seat] = 0.0
    assert stays >= 3 and spells >= 2 and all(truncs.values())
    assert raw.counters() == {"scripted_fallbacks": 0, "invalid_actions": 0, "exits": stays}


def test_numeric_infos_keep_one_schema_every_step() -> None:
    """With numeric_infos every seat's infos have the same numeric keys at reset and every step."""
    env = SeatEpisodes(
        parallel_env(variant="compact", overrides=CHURN, decisions="points"), flat=False, numeric_infos=True
    )
    obs, infos = env.reset(seed=1)
    keys = {"occupied", "left", "arrived", "exit_reason", "ticks", "must_decide", "discounted_reward"}
    rng = np.random.default_rng(1)
    reasons = set()
    while env.agents:
        actions = {s: int(rng.choice(np.flatnonzero(obs[s]["action_mask"]))) for s in env.agents}
        obs, _, _, _, infos = env.step(actions)
        for info in infos.values():
            assert set(info) == keys and all(isinstance(v, bool | int | float) for v in info.values())
            reasons.add(info["exit_reason"])
    assert REASONS.index("age_out") in reasons and -1 in reasons


def test_seat_rows_match_single_envs_seat_by_seat() -> None:
    """Row t*S + s of SeatRows is seat s of a SeatEpisodes env reset with seed + t, step for step."""
    rows = SeatRows(2, variant="compact", overrides=CHURN)
    obs = rows.reset(seed=7)
    singles = [SeatEpisodes(parallel_env(variant="compact", overrides=CHURN)) for _ in range(2)]
    single_obs = [env.reset(seed=7 + t)[0] for t, env in enumerate(singles)]
    rng = np.random.default_rng(4)
    for step in range(199):  # the first episode (the horizon is 200)
        masks = action_masks(obs, 7)
        actions = (rng.random(masks.shape) * masks).argmax(-1)
        obs, rewards, terminated, truncated = rows.step(actions)
        for t, env in enumerate(singles):
            single_obs[t], r, term, _, _ = env.step({s: int(actions[t * 8 + i]) for i, s in enumerate(env.agents)})
            for i, seat in enumerate(env.possible_agents):
                row = t * 8 + i
                assert np.array_equal(obs[row], single_obs[t][seat]), (step, row)
                assert rewards[row] == np.float32(r[seat]) and terminated[row] == term[seat]
        assert not truncated.any()
    assert rows.exits >= 4 and rows.invalid_actions == 0 and rows.scripted_fallbacks == 0


def test_towns_vector_env_autoresets_with_final_observations_and_reports_stays() -> None:
    """At the horizon every row is truncated, the next episode's observations come back, the last ones in infos."""
    envs = TownsVectorEnv(2, variant="compact", overrides=CHURN)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (16, envs.single_observation_space.shape[0]) and envs.observation_space.contains(obs)
    rng = np.random.default_rng(0)
    stays = 0
    for step in range(200):
        before = obs
        masks = envs.action_masks()
        obs, rewards, terminated, truncated, infos = envs.step((rng.random(masks.shape) * masks).argmax(-1))
        if "episode" in infos:
            stays += int(infos["_episode"].sum())
        assert truncated.all() == (step == 199)
    assert stays >= 16 and "final_obs" in infos and infos["_final_obs"].all()
    assert not np.array_equal(infos["final_obs"], obs) and not np.array_equal(infos["final_obs"], before)
    assert np.array_equal(action_masks(obs, 7), envs.action_masks())
    assert envs.rows.invalid_actions == 0
    with pytest.raises(ValueError, match="seats"):
        TownsVectorEnv(1, seats=0)


def test_decision_mode_passes_through_the_vector_env() -> None:
    """decisions="points": steps span several ticks (infos["ticks"]) and non-deciders may only continue."""
    envs = TownsVectorEnv(2, variant="compact", overrides=CHURN, decisions="points")
    envs.reset(seed=2)
    rng = np.random.default_rng(2)
    ticks, single_choice = [], 0
    for _ in range(60):
        masks = envs.action_masks()
        single_choice += int((masks.sum(-1) == 1).sum())
        _, _, _, _, infos = envs.step((rng.random(masks.shape) * masks).argmax(-1))
        ticks += infos["ticks"].tolist()
    assert max(ticks) > 1 and single_choice > 0 and envs.rows.invalid_actions == 0


def test_seat_rows_pickle_and_a_missing_library_names_the_extra() -> None:
    """SeatRows round-trips through pickle; an adapter whose library is missing says which extra to install."""
    rows = SeatRows(1, variant="compact", overrides=CHURN)
    rows.reset(seed=1)
    twin = pickle.loads(pickle.dumps(rows))
    idle = np.full(8, int(Option.IDLE))
    for _ in range(30):
        assert np.array_equal(rows.step(idle)[0], twin.step(idle)[0])
    with pytest.raises(ImportError, match=r"townlet\[ecosystem\]"):
        require("a_library_that_is_not_installed", "this adapter")

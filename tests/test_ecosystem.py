"""The libraries researchers use, on a churning town: each example in examples/ trains with a tiny budget.

Slow (minutes) and needing ``townlet[ecosystem]`` (CI's slow job installs it). Every run has agents leaving
and newcomers taking their seats; each asserts that the learner drove every agent (0 scripted fallbacks)
and, where masks are used, that no action was ignored.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from env_support import churn, churn_args

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CHURN = churn(200)
SETS = churn_args(200)


def run_example(name: str, *args: str, timeout: int = 280) -> dict:
    """Run ``examples/<name>`` with the churn settings; its last stdout line is its JSON summary."""
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(EXAMPLES / name), *args, *SETS],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("cpus", [0, 2])
def test_supersuit_concat_trains_sb3_ppo_with_churn(cpus: int) -> None:
    """SuperSuit's concat (in process and in 2 worker processes) + SB3 PPO trains a few thousand steps."""
    out = run_example(
        "sb3_maskable_ppo.py",
        "--algo",
        "ppo",
        "--cpus",
        str(cpus),
        "--copies",
        "2",
        "--steps",
        "3000",
        "--n-steps",
        "128",
    )
    assert out["timesteps"] >= 3000 and out["rows"] == 16 and out["town_episodes"] >= 2
    assert out["exits"] >= 5 and out["stays_finished"] >= 5 and out["scripted_fallbacks"] == 0
    assert out["invalid_actions"] > 0, "plain PPO ignores masks: the town sees (and ignores) masked choices"


def test_supersuit_and_maskable_ppo_never_send_a_masked_action() -> None:
    """MaskablePPO over SuperSuit reads the masks from the observations: 0 ignored actions, 0 fallbacks."""
    out = run_example(
        "sb3_maskable_ppo.py", "--algo", "maskable", "--copies", "2", "--steps", "3000", "--n-steps", "128"
    )
    assert out["timesteps"] >= 3000 and out["exits"] >= 5 and out["town_episodes"] >= 2
    assert out["scripted_fallbacks"] == 0 and out["invalid_actions"] == 0


def test_maskable_ppo_on_the_sb3_vec_env_over_batched_towns() -> None:
    """TownsVecEnv (BatchedTowns as SB3 rows) trains MaskablePPO in decision mode: stays logged, masks kept."""
    from sb3_contrib import MaskablePPO

    from townlet.env.wrappers.sb3 import TownsVecEnv

    venv = TownsVecEnv(2, variant="compact", overrides=CHURN, decisions="points")
    model = MaskablePPO(
        "MlpPolicy", venv, n_steps=128, batch_size=256, n_epochs=1, seed=0, policy_kwargs={"net_arch": [32, 32]}
    )
    model.learn(3000)
    rows = venv.rows
    assert model.num_timesteps >= 3000 and len(model.ep_info_buffer) >= 10
    assert rows.exits >= 5 and rows.scripted_fallbacks == 0 and rows.invalid_actions == 0
    masks = np.stack(venv.env_method("action_masks"))
    assert masks.shape == (16, 7) and np.array_equal(masks, venv.action_masks())


def test_rllib_trains_two_iterations_with_samples_in_each() -> None:
    """RLlib's PPO (new API stack, action-masking module) runs 2 iterations with churn, sampling in both."""
    out = run_example("rllib_multi_agent.py", "--iterations", "2", "--batch", "200")
    assert len(out["env_steps_sampled"]) == 2 and all(n >= 200 for n in out["env_steps_sampled"])
    assert out["exits"] >= 2 and all(n >= 1 for n in out["episodes"])
    assert out["scripted_fallbacks"] == 0 and out["invalid_actions"] == 0


def test_rllib_env_passes_rllibs_own_check_and_cuts_episodes_at_exits() -> None:
    """RLlib's check_multiagent_environments passes; an exit ends the RLlib episode and the town carries on."""
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    from townlet.env.wrappers.rllib import TownletMultiAgentEnv

    check_multiagent_environments(TownletMultiAgentEnv({"variant": "compact", "overrides": CHURN}))
    env = TownletMultiAgentEnv({"variant": "compact", "overrides": CHURN})  # (the check's actions ignore masks)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(3)
    cuts = 0
    while cuts < 3:
        tick = env.env.sim.tick
        actions = {a: int(rng.choice(np.flatnonzero(o["action_mask"]))) for a, o in obs.items()}
        obs, rewards, terms, truncs, _ = env.step(actions)
        assert set(rewards) == set(actions), "rewards for exactly the seats that acted"
        left = [a for a in terms if a != "__all__" and terms[a]]
        if left:
            assert truncs["__all__"] and len(left) == 1 and all(truncs[a] for a in obs if a not in left)
            cuts += 1
            obs, _ = env.reset()
            assert env.env.sim.tick == tick + 1 and left[0] not in obs, "the same town goes on"
        elif truncs["__all__"]:  # the horizon: a fresh town
            obs, _ = env.reset()
            assert env.env.sim.tick == 0
    assert env.env.counters()["invalid_actions"] == 0


def test_torchrl_collects_rollouts_with_churn_and_trains() -> None:
    """TorchRL's PettingZooWrapper over the seats: masked rollouts with churn and PPO updates."""
    out = run_example("torchrl_ppo.py", "--iterations", "2", "--frames", "150", "--epochs", "1")
    assert out["frames"] == 300 and out["exits"] >= 2 and all(np.isfinite(list(out["losses"].values())))
    assert out["scripted_fallbacks"] == 0 and out["invalid_actions"] == 0


@pytest.mark.parametrize("decisions", ["ticks", "points"])
def test_the_cleanrl_style_ppo_trains_on_the_vector_env(decisions: str) -> None:
    """The single-file PPO trains on TownsVectorEnv, tick by tick and in decision mode (per-tick discounts)."""
    out = run_example("cleanrl_ppo.py", "--total-steps", "4000", "--towns", "2", "--decisions", decisions)
    assert out["steps"] >= 4000 and out["stays_finished"] >= 5 and out["exits"] >= 5
    assert out["scripted_fallbacks"] == 0 and out["invalid_actions"] == 0

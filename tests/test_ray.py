"""The Ray path: rollout workers as actors on a local Ray instance give what the single-process trainer gives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from townlet.policy.checkpoint import load
from townlet.policy.networks import NetworkSpec, OptionPolicyNet
from townlet.training.ppo import PPOArgs, train
from townlet.training.ray_rollouts import RayCollector
from townlet.training.rollout import Collector

pytestmark = pytest.mark.slow  # starting Ray and its worker processes takes tens of seconds on 2 cores

TINY = {
    "rollout_ticks": 32,
    "window_ticks": 64,
    "baselines": False,
    "checkpoint_every": 100,
    "seed": 4,
    "env_workers": 0,
}


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for the module (the collectors join it rather than start their own)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    ray.shutdown()


def windows(out: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["window"] for r in rows if r["kind"] == "update" and "window" in r]


def test_two_ray_workers_collect_what_one_process_collects(local_ray: None) -> None:
    """2 actors x 1 town and 1 process x 2 towns: the same transitions, actions and rewards for the same weights."""
    ray_side = RayCollector(None, [], workers=2, towns=1, seed=20, gamma=0.99, address="local")
    local = Collector(None, [], 2, 20, 0.99)
    torch.manual_seed(0)
    net = OptionPolicyNet(NetworkSpec.for_layout(local.layout, local.n_actions))
    try:
        a = ray_side.collect(net, 1200)
        b = local.collect(net, 1200)
        assert a.town_ticks == b.town_ticks == 2400
        order_a, order_b = np.lexsort((a.ticks, a.slots)), np.lexsort((b.ticks, b.slots))
        np.testing.assert_array_equal(np.sort(a.slots), np.sort(b.slots))
        assert (a.actions[order_a] == b.actions[order_b]).mean() > 0.99
        np.testing.assert_allclose(a.rewards.sum(), b.rewards.sum(), rtol=0.05, atol=1e-3)
        assert len(a.windows) == len(b.windows) == 1 and a.window_ends == b.window_ends == [2000]
        np.testing.assert_allclose(a.windows[0], b.windows[0], rtol=0.05, atol=0.1)
    finally:
        ray_side.close()


def test_ray_training_matches_the_single_process_trainer(local_ray: None, tmp_path: Path) -> None:
    """A few PPO updates on local Ray (2 workers) and in one process: same checkpoint shape, KPIs within noise."""
    on_ray = train(PPOArgs(out=str(tmp_path / "ray"), total_steps=256, ray="local", workers=2, towns=1, **TINY))
    single = train(PPOArgs(out=str(tmp_path / "one"), total_steps=256, towns=2, **TINY))
    assert on_ray["global_step"] == single["global_step"] == 256 and on_ray["updates"] == single["updates"] == 4
    a, b = load(on_ray["final"]), load(single["final"])
    assert a.spec == b.spec and a.variant == b.variant and a.config_id == b.config_id
    assert {k: v.shape for k, v in a.state_dict.items()} == {k: v.shape for k, v in b.state_dict.items()}
    wa, wb = windows(tmp_path / "ray"), windows(tmp_path / "one")
    assert len(wa) == len(wb) == 2
    for x, y in zip(wa, wb, strict=True):
        assert abs(x["need_ok_share"] - y["need_ok_share"]) <= 0.15
        assert abs(x["reward"] - y["reward"]) <= 0.005
        assert abs(x["attendance"] - y["attendance"]) <= 0.25

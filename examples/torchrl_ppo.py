"""Collect Townlet rollouts with TorchRL and train a shared masked policy with TorchRL's PPO loss.

The env is :func:`townlet.env.wrappers.torchrl.torchrl_env`: TorchRL's ``PettingZooWrapper`` with every seat
in one group, ``"seat"``. Each seat's ``terminated`` marks the end of an occupant's stay, so GAE restarts
there; the batch is done only at the horizon. The actor samples from a ``MaskedCategorical`` over the seat's
``action_mask``, so masked options are never sent.

    pip install 'townlet[ecosystem]' -c constraints.txt
    python examples/torchrl_ppo.py --iterations 20 --frames 500 --set features.lifecycle=on

Prints one JSON object: frames collected, mean reward per seat-step, PPO losses, and the counters that say
every agent was driven by the policy and followed its mask.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from tensordict.nn import TensorDictModule
from torchrl.modules import MLP, MaskedCategorical, ProbabilisticActor
from torchrl.objectives import ClipPPOLoss, ValueEstimators

from townlet.env.wrappers.torchrl import GROUP, torchrl_env

OBS = (GROUP, "observation", "observation")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=10, help="rollouts, each followed by PPO updates")
    p.add_argument("--frames", type=int, default=500, help="env steps per rollout")
    p.add_argument("--epochs", type=int, default=4, help="gradient steps per rollout")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--variant", default="compact", choices=["full", "hybrid", "compact"])
    p.add_argument("--decisions", default="ticks", choices=["ticks", "points"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Townlet config override, e.g. features.lifecycle=on (repeatable)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Train, then print and return the summary."""
    args = parse(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    env = torchrl_env(seed=args.seed, variant=args.variant, overrides=args.sets, decisions=args.decisions)
    size = env.observation_spec[OBS].shape[-1]
    actions = env.full_action_spec[GROUP, "action"].space.n
    logits = TensorDictModule(
        MLP(in_features=size, out_features=actions, num_cells=[64, 64]), in_keys=[OBS], out_keys=[(GROUP, "logits")]
    )
    actor = ProbabilisticActor(
        logits,
        in_keys={"logits": (GROUP, "logits"), "mask": (GROUP, "action_mask")},
        out_keys=[(GROUP, "action")],
        distribution_class=MaskedCategorical,
        return_log_prob=True,
        log_prob_key=(GROUP, "sample_log_prob"),
    )
    critic = TensorDictModule(
        MLP(in_features=size, out_features=1, num_cells=[64, 64]), in_keys=[OBS], out_keys=[(GROUP, "state_value")]
    )
    loss = ClipPPOLoss(actor, critic, normalize_advantage=True)
    loss.set_keys(
        reward=(GROUP, "reward"),
        action=(GROUP, "action"),
        done=(GROUP, "done"),
        terminated=(GROUP, "terminated"),
        value=(GROUP, "state_value"),
        sample_log_prob=(GROUP, "sample_log_prob"),
        advantage=(GROUP, "advantage"),
        value_target=(GROUP, "value_target"),
    )
    loss.make_value_estimator(ValueEstimators.GAE, gamma=0.99, lmbda=0.95)
    optimiser = torch.optim.Adam(loss.parameters(), lr=args.lr)
    frames, rewards, last = 0, [], {}
    t0 = time.perf_counter()
    for _ in range(args.iterations):
        with torch.no_grad():
            batch = env.rollout(args.frames, policy=actor, break_when_any_done=False)
            loss.value_estimator(
                batch, params=loss.critic_network_params, target_params=loss.target_critic_network_params
            )
        frames += batch.batch_size[0]
        rewards.append(float(batch["next", GROUP, "reward"].mean()))
        for _ in range(args.epochs):
            terms = loss(batch)
            total = terms["loss_objective"] + terms["loss_critic"] + terms["loss_entropy"]
            optimiser.zero_grad()
            total.backward()
            optimiser.step()
        last = {k: round(float(v), 4) for k, v in terms.items() if k.startswith("loss_")}
    town = env._env.unwrapped  # the Townlet env under the wrapper
    summary = {
        "frames": frames,
        "seconds": round(time.perf_counter() - t0, 1),
        "mean_reward": round(sum(rewards) / len(rewards), 5),
        "losses": last,
        **town.counters(),
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

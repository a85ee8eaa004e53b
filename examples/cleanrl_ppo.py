"""PPO with action masks over every seat of a batch of towns, in one file (CleanRL's style).

The env is :class:`townlet.env.wrappers.TownsVectorEnv`: ``BatchedTowns`` as rows of seats, a flat
observation with the action mask in its last entries, a row's episode the stay of one occupant (it ends when
the occupant leaves, and when a newcomer takes the empty seat), autoreset at the horizon with the final
observations in ``infos["final_obs"]``. With ``--decisions points`` (the semi-MDP) a step lasts until somebody
must decide, and the returns here discount per tick: ``gamma ** infos["ticks"]`` per step.

    python examples/cleanrl_ppo.py --total-steps 200000 --towns 8
    python examples/cleanrl_ppo.py --decisions points --set features.lifecycle=on

Read it top to bottom: the arguments, the network, then the loop. Prints one JSON object at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from townlet.env.wrappers import TownsVectorEnv


@dataclass
class Args:
    """What to train and how."""

    total_steps: int = 100_000
    """rows x env steps to train for"""
    towns: int = 4
    """towns stepped together (each gives `seats` rows)"""
    rollout: int = 128
    """env steps per rollout"""
    epochs: int = 4
    """passes over each rollout"""
    minibatches: int = 4
    """minibatches per pass"""
    lr: float = 3e-4
    """Adam learning rate"""
    gamma: float = 0.99
    """discount per tick"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    clip: float = 0.2
    """PPO ratio clip"""
    entropy: float = 0.01
    """entropy bonus"""
    value_coef: float = 0.5
    """value loss weight"""
    variant: str = "compact"
    """observation variant: full, hybrid or compact"""
    decisions: str = "ticks"
    """ticks (a step is a tick) or points (decision mode)"""
    seed: int = 0
    """seed of the towns and of torch"""
    threads: int = 1
    """torch threads"""
    sets: tuple[str, ...] = ()
    """Townlet config overrides, KEY=VALUE (--set, repeatable)"""


def parse(argv: list[str] | None = None) -> Args:
    """Args from the command line (``--total-steps``, ``--set KEY=VALUE``...)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(Args):
        if f.name == "sets":
            p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=f.__doc__)
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    ns = p.parse_args(argv)
    return Args(**{**vars(ns), "sets": tuple(ns.sets)})


class Agent(nn.Module):
    """Shared actor-critic MLP; the actor's logits of masked actions are pushed to -inf."""

    def __init__(self, obs_size: int, actions: int) -> None:
        super().__init__()
        self.actions = actions
        self.critic = nn.Sequential(nn.Linear(obs_size, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
        self.actor = nn.Sequential(
            nn.Linear(obs_size, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, actions)
        )

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(obs), ``[B]``."""
        return self.critic(obs).squeeze(-1)

    def act(self, obs: torch.Tensor, action: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Sample (or score ``action``) under the mask carried in ``obs``: action, log-prob, entropy, value."""
        mask = obs[:, -self.actions :] > 0.5
        logits = self.actor(obs).masked_fill(~mask, -1e9)
        dist = torch.distributions.Categorical(logits=logits)
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.value(obs)


def main(argv: list[str] | None = None) -> dict:
    """Train, then print and return the summary."""
    args = parse(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    envs = TownsVectorEnv(args.towns, variant=args.variant, overrides=list(args.sets), decisions=args.decisions)
    rows, size = envs.num_envs, envs.single_observation_space.shape[0]
    agent = Agent(size, int(envs.single_action_space.n))
    optimiser = torch.optim.Adam(agent.parameters(), lr=args.lr, eps=1e-5)

    shape = (args.rollout, rows)
    obs_buf = torch.zeros((*shape, size))
    act_buf, logp_buf = torch.zeros(shape, dtype=torch.long), torch.zeros(shape)
    rew_buf, done_buf, val_buf = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)
    disc_buf = torch.zeros(shape)  # each step's discount: gamma ** ticks it lasted (1 tick by tick)
    boot_buf = torch.zeros(shape)  # value of a truncated row's final observation, added to its reward

    obs_np, _ = envs.reset(seed=args.seed)
    obs = torch.as_tensor(obs_np)
    steps, returns, t0 = 0, [], time.perf_counter()
    while steps < args.total_steps:
        for t in range(args.rollout):
            obs_buf[t] = obs
            with torch.no_grad():
                action, logp, _, value = agent.act(obs)
            obs_np, reward, terminated, truncated, infos = envs.step(action.numpy())
            act_buf[t], logp_buf[t], val_buf[t] = action, logp, value
            rew_buf[t] = torch.as_tensor(reward)
            done_buf[t] = torch.as_tensor(terminated | truncated, dtype=torch.float32)
            disc_buf[t] = torch.as_tensor(args.gamma ** infos["ticks"], dtype=torch.float32)
            boot_buf[t] = 0.0
            if "final_obs" in infos:  # truncated at the horizon: bootstrap from the last observation
                cut = torch.as_tensor(infos["_final_obs"] & ~terminated)
                with torch.no_grad():
                    boot_buf[t][cut] = agent.value(torch.as_tensor(infos["final_obs"][cut.numpy()]))
            if "episode" in infos:
                returns += infos["episode"]["r"][infos["_episode"]].tolist()
            obs = torch.as_tensor(obs_np)
            steps += rows

        with torch.no_grad():  # GAE, discounting each step by the ticks it lasted
            advantages = torch.zeros(shape)
            last_gae, next_value = torch.zeros(rows), agent.value(obs)
            for t in reversed(range(args.rollout)):
                alive = 1.0 - done_buf[t]
                later = next_value if t == args.rollout - 1 else val_buf[t + 1]
                delta = rew_buf[t] + disc_buf[t] * (boot_buf[t] + alive * later) - val_buf[t]
                last_gae = delta + disc_buf[t] * args.gae_lambda * alive * last_gae
                advantages[t] = last_gae
            targets = advantages + val_buf

        flat = [x.reshape(-1, *x.shape[2:]) for x in (obs_buf, act_buf, logp_buf, advantages, targets)]
        b_obs, b_act, b_logp, b_adv, b_ret = flat
        size_mb = len(b_obs) // args.minibatches
        for _ in range(args.epochs):
            order = torch.randperm(len(b_obs))
            for start in range(0, len(b_obs), size_mb):
                mb = order[start : start + size_mb]
                _, logp, entropy, value = agent.act(b_obs[mb], b_act[mb])
                ratio = (logp - b_logp[mb]).exp()
                adv = (b_adv[mb] - b_adv[mb].mean()) / (b_adv[mb].std() + 1e-8)
                policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip, 1 + args.clip)).mean()
                value_loss = 0.5 * (value - b_ret[mb]).pow(2).mean()
                loss = policy_loss + args.value_coef * value_loss - args.entropy * entropy.mean()
                optimiser.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
                optimiser.step()

    rows_env = envs.rows
    summary = {
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "stays_finished": len(returns),
        "mean_stay_return": round(float(np.mean(returns[-100:])), 3) if returns else None,
        "scripted_fallbacks": rows_env.scripted_fallbacks,
        "invalid_actions": rows_env.invalid_actions,
        "exits": int(rows_env.exits),
    }
    envs.close()
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

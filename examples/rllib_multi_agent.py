"""Train RLlib's PPO (new API stack) on Townlet: one shared policy for every seat, with action masking.

The env is :class:`townlet.env.wrappers.rllib.TownletMultiAgentEnv` (seats as agent ids, observations as
``{"observations", "action_mask"}``) and the module RLlib's own ``ActionMaskingTorchRLModule``, so masked
options are never sampled. When an agent leaves town, the RLlib episode is cut there (the leaver terminated,
the others truncated with bootstrapped values) and the next one carries on in the same town; newcomers join
the episode they arrive in (docs/ecosystem.md).

    pip install 'townlet[ecosystem]' -c constraints.txt
    python examples/rllib_multi_agent.py --iterations 20 --set features.lifecycle=on
    python examples/rllib_multi_agent.py --env-runners 2      # rollouts in Ray worker processes

Prints one JSON object: env steps sampled in each training iteration, episodes (segments), and the
counters that say every agent was driven by RLlib and followed its mask (with ``--env-runners 0``, where
the env lives in this process).
"""

from __future__ import annotations

import argparse
import json
import time

import ray
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.examples.rl_modules.classes.action_masking_rlm import ActionMaskingTorchRLModule

from townlet.env.wrappers.rllib import TownletMultiAgentEnv

POLICY = "shared"


def every_seat_to_the_shared_policy(agent_id: str, episode: object, **kwargs: object) -> str:
    """Policy mapping: all seats share one module."""
    return POLICY


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=10, help="algo.train() calls")
    p.add_argument("--batch", type=int, default=1000, help="env steps per training iteration")
    p.add_argument("--env-runners", type=int, default=0, help="Ray env-runner processes (0: sample in the driver)")
    p.add_argument("--variant", default="compact", choices=["full", "hybrid", "compact"])
    p.add_argument("--decisions", default="ticks", choices=["ticks", "points"])
    p.add_argument("--seed", type=int, default=0)
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
    ray.init(
        num_cpus=max(1, args.env_runners + 1), include_dashboard=False, log_to_driver=False, ignore_reinit_error=True
    )
    env_config = {"variant": args.variant, "overrides": args.sets, "decisions": args.decisions}
    config = (
        PPOConfig()
        # RLlib's env check steps once with unmasked random actions; tests/test_ecosystem.py runs it separately.
        .environment(TownletMultiAgentEnv, env_config=env_config, disable_env_checking=True)
        .multi_agent(policies={POLICY}, policy_mapping_fn=every_seat_to_the_shared_policy)
        .rl_module(
            rl_module_spec=MultiRLModuleSpec(
                rl_module_specs={
                    POLICY: RLModuleSpec(
                        module_class=ActionMaskingTorchRLModule, model_config={"head_fcnet_hiddens": [64, 64]}
                    )
                }
            )
        )
        .env_runners(num_env_runners=args.env_runners)
        .training(train_batch_size_per_learner=args.batch, minibatch_size=max(args.batch // 4, 32), num_epochs=2)
        .debugging(seed=args.seed)
    )
    algo = config.build_algo()
    sampled, episodes = [], []
    t0 = time.perf_counter()
    try:
        for _ in range(args.iterations):
            result = algo.train()
            runners = result["env_runners"]
            sampled.append(int(runners.get("num_env_steps_sampled", 0)))
            episodes.append(int(runners.get("num_episodes", 0)))
        summary: dict = {
            "iterations": args.iterations,
            "env_steps_sampled": sampled,
            "episodes": episodes,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if args.env_runners == 0:  # the env lives in this process: read its counters
            towns = [env.unwrapped.env for env in algo.env_runner.env.unwrapped.envs]
            for key in ("exits", "scripted_fallbacks", "invalid_actions"):
                summary[key] = sum(town.counters()[key] for town in towns)
    finally:
        algo.stop()
        ray.shutdown()
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

"""Train Stable-Baselines3 on Townlet through SuperSuit: MaskablePPO (masks respected) or plain PPO.

Every seat of every town copy is one row of SB3's vector env. SuperSuit turns the PettingZoo env into a
vector env (``pettingzoo_env_to_vec_env_v1``) and concatenates copies of it (``concat_vec_envs_v1``, in
worker processes with ``--cpus``); :class:`townlet.env.wrappers.SeatEpisodes` makes each occupant's stay its
seat's episode and flattens the observation (action mask appended), and
:class:`townlet.env.wrappers.sb3.ActionMasks` hands MaskablePPO the masks.

    pip install 'townlet[ecosystem]' -c constraints.txt
    python examples/sb3_maskable_ppo.py --steps 20000 --copies 4 --cpus 2
    python examples/sb3_maskable_ppo.py --algo ppo --set features.lifecycle=on

Prints one JSON object: steps trained, stays (episodes) finished and their mean return, and the counters
that say every agent was driven by the learner (``scripted_fallbacks``) and followed its mask
(``invalid_actions``: MaskablePPO never sends a masked action; plain PPO does, and the town ignores them).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import supersuit as ss
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from townlet.env import parallel_env
from townlet.env.wrappers import SeatEpisodes
from townlet.env.wrappers.sb3 import ActionMasks


class TownCounters(BaseCallback):
    """Reads what the towns report in their seats' infos: finished stays, and each copy's counters.

    Args:
        seats: Rows per town copy (each copy reports its counters, kept since it was built, on every row).
    """

    def __init__(self, seats: int) -> None:
        super().__init__()
        self.seats = seats
        self.copies: dict[int, dict[str, int]] = {}
        self.stays = 0
        self.town_episodes = 0

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        self.stays += sum("episode" in info for info in infos)
        for i in range(0, len(infos), self.seats):
            if "counters" in infos[i]:
                self.copies[i // self.seats] = infos[i]["counters"]
                self.town_episodes += 1
        return True


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", choices=["maskable", "ppo"], default="maskable")
    p.add_argument("--steps", type=int, default=20_000, help="SB3 timesteps (rows x env steps)")
    p.add_argument("--copies", type=int, default=2, help="town copies concatenated by SuperSuit")
    p.add_argument("--cpus", type=int, default=0, help="SuperSuit worker processes (0: in this process)")
    p.add_argument("--variant", default="compact", choices=["full", "hybrid", "compact"])
    p.add_argument("--decisions", default="ticks", choices=["ticks", "points"])
    p.add_argument("--n-steps", type=int, default=256, help="rollout length per row")
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
    torch.set_num_threads(args.threads)
    env = SeatEpisodes(parallel_env(variant=args.variant, overrides=args.sets, decisions=args.decisions))
    seats = len(env.possible_agents)
    venv = ss.pettingzoo_env_to_vec_env_v1(env)
    venv = ss.concat_vec_envs_v1(venv, args.copies, num_cpus=args.cpus, base_class="stable_baselines3")
    venv = ActionMasks(venv)
    algo = MaskablePPO if args.algo == "maskable" else PPO
    model = algo(
        "MlpPolicy",
        venv,
        n_steps=args.n_steps,
        batch_size=min(512, args.n_steps * venv.num_envs),
        n_epochs=2,
        seed=args.seed,
        verbose=0,
        policy_kwargs={"net_arch": [64, 64]},
    )
    counters = TownCounters(seats)
    t0 = time.perf_counter()
    model.learn(args.steps, callback=counters)
    seconds = time.perf_counter() - t0
    venv.close()
    returns = [e["r"] for e in model.ep_info_buffer]
    summary = {
        "algo": args.algo,
        "timesteps": int(model.num_timesteps),
        "rows": venv.num_envs,
        "seconds": round(seconds, 1),
        "stays_finished": counters.stays,
        "mean_stay_return": round(float(np.mean(returns)), 3) if returns else None,  # the last 100
        "town_episodes": counters.town_episodes,
        **{
            key: sum(c[key] for c in counters.copies.values())
            for key in ("exits", "scripted_fallbacks", "invalid_actions")
        },
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

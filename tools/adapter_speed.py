"""Single-env speed through each adapter of townlet.env.wrappers, against the raw PettingZoo env, as JSON.

    python tools/adapter_speed.py --steps 2000 [--variant hybrid] [--decisions ticks] [--profile 300]

Every contender steps one town (8 seats) with lifecycle and perturbations on and frequent exits, under the
same random masked policy (actions drawn outside the timed calls). The contenders take turns in chunks of 50
steps, so a busy machine slows them alike. ``ratio`` is env steps/s against raw. With ``--profile N``, each
contender's N more steps run under cProfile: ``townlet_share`` is the part of their time spent inside Townlet's
code, ``library_share`` the rest (the library's wrappers, conversions, copies), and ``library_top`` the three
costliest functions outside Townlet. Needs ``townlet[ecosystem]``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from townlet.env import env as aec_env
from townlet.env import parallel_env
from townlet.env.speed import steady_heap
from townlet.env.wrappers import SeatEpisodes, TownsVectorEnv, action_masks, require

CHURN = {
    "features.lifecycle": "on",
    "features.perturbations": "on",
    "lifecycle.exits.age_out": True,
    "lifecycle.age_out_days": 0.08,
    "lifecycle.max_exits_per_day": 50,
    "lifecycle.exit_spacing": 3,
}


LIBRARY_FACES = ("wrappers/sb3.py", "wrappers/rllib.py", "wrappers/torchrl.py")  # counted with their library


class Contender:
    """One way of stepping a town: ``prepare()`` draws the next actions (untimed), ``step()`` is timed."""

    def __init__(self, prepare: Callable[[], Any], step: Callable[[Any], Any]) -> None:
        self.prepare, self.step = prepare, step
        self.seconds, self.steps = 0.0, 0

    def run(self, n: int, timed: bool = True) -> None:
        for _ in range(n):
            actions = self.prepare()
            t0 = time.perf_counter()
            self.step(actions)
            if timed:
                self.seconds += time.perf_counter() - t0
                self.steps += 1


def random_choice(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    return (rng.random(masks.shape) * masks).argmax(axis=-1)


def dict_contender(
    env: Any, rng: np.random.Generator, mask_of: Callable[[Any], np.ndarray], cuts: bool = False
) -> Contender:
    """A PettingZoo-style env stepped with a dict of actions (raw, seat episodes, RLlib).

    ``cuts``: RLlib's env ends its episode at every exit, and its runner resets it then (timed here too).
    """
    state = {"obs": env.reset(seed=0)[0]}

    def prepare() -> dict:
        obs = state["obs"]
        seats = list(obs)
        choice = random_choice(rng, np.stack([mask_of(obs[s]) for s in seats]))
        return dict(zip(seats, choice.tolist(), strict=True))

    def step(actions: dict) -> None:
        obs, _, _, truncations, _ = env.step(actions)
        state["obs"] = env.reset()[0] if cuts and truncations["__all__"] else obs

    return Contender(prepare, step)


def contenders(args: argparse.Namespace, horizon: int) -> dict[str, Contender]:
    overrides = {**CHURN, "env.horizon": horizon}
    kw = {"variant": args.variant, "overrides": overrides, "decisions": args.decisions}
    rng = np.random.default_rng(0)
    out: dict[str, Contender] = {}
    out["raw"] = dict_contender(parallel_env(**kw), rng, lambda o: o["action_mask"])
    actions_n = 7
    out["seat_episodes_flat"] = dict_contender(
        SeatEpisodes(parallel_env(**kw)), rng, lambda o: action_masks(o, actions_n)
    )

    aec = aec_env(**kw)
    aec.reset(seed=0)

    def aec_prepare() -> list:  # a cycle's actions, from the observations of the last parallel step
        masks = np.stack([aec.observe(seat)["action_mask"] for seat in aec.agents])
        return random_choice(rng, masks).tolist()

    def aec_step(actions: list) -> None:  # one cycle: every seat acts once (= one parallel step)
        for action in actions:
            aec.step(action)

    out["parallel_to_aec"] = Contender(aec_prepare, aec_step)

    supersuit = require("supersuit", "the SuperSuit contender")
    venv = supersuit.pettingzoo_env_to_vec_env_v1(SeatEpisodes(parallel_env(**kw)))
    venv = supersuit.concat_vec_envs_v1(venv, 1, num_cpus=0, base_class="stable_baselines3")
    sb3 = require("townlet.env.wrappers.sb3", "the SB3 contenders")
    venv = sb3.ActionMasks(venv)
    venv.reset()
    out["supersuit_sb3"] = Contender(lambda: random_choice(rng, venv.action_masks()), lambda a: venv.step(a))

    towns = sb3.TownsVecEnv(1, **kw)
    towns.reset()
    out["towns_vec_env_sb3"] = Contender(lambda: random_choice(rng, towns.action_masks()), lambda a: towns.step(a))
    gym_towns = TownsVectorEnv(1, **kw)
    gym_towns.reset(seed=0)
    out["towns_vector_env_gymnasium"] = Contender(
        lambda: random_choice(rng, gym_towns.action_masks()), lambda a: gym_towns.step(a)
    )

    rllib = require("townlet.env.wrappers.rllib", "the RLlib contender")
    ma = rllib.TownletMultiAgentEnv(kw)
    out["rllib_multi_agent_env"] = dict_contender(ma, rng, lambda o: o["action_mask"], cuts=True)

    torchrl = require("townlet.env.wrappers.torchrl", "the TorchRL contender")
    trl = torchrl.torchrl_env(seed=0, **kw)
    state = {"td": trl.reset()}

    def trl_prepare() -> Any:
        td = state["td"]
        mask = td["seat", "action_mask"].numpy()
        td["seat", "action"] = require("torch", "TorchRL").as_tensor(random_choice(rng, mask))
        return td

    def trl_step(td: Any) -> None:
        state["td"] = trl.step_and_maybe_reset(td)[1]

    out["torchrl_pettingzoo"] = Contender(trl_prepare, trl_step)
    return out


def profile(contender: Contender, steps: int) -> dict[str, Any]:
    """Where a contender's step time goes: Townlet's own code (entered from the library) against the library's."""
    prof = cProfile.Profile()
    for _ in range(steps):
        actions = contender.prepare()
        prof.enable()
        contender.step(actions)
        prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in stats.values())  # tottime over every function

    def ours(func: tuple) -> bool:  # the town and the env's own layers, not the thin faces libraries call
        path = func[0]
        return "/townlet/" in path and not path.endswith(LIBRARY_FACES) and "/tools/" not in path

    # Townlet's time: the inclusive time of each call into Townlet code from outside it.
    own = sum(
        edge[3] for func, row in stats.items() if ours(func) for caller, edge in row[4].items() if not ours(caller)
    )
    top = sorted(((f, r) for f, r in stats.items() if not ours(f)), key=lambda kv: -kv[1][2])[:3]
    return {
        "townlet_share": round(min(own / total, 1.0), 3),
        "library_share": round(max(1 - own / total, 0.0), 3),
        "library_top": [
            f"{path.split('site-packages/')[-1]}:{line} {name} {row[2] / total:.0%}" for (path, line, name), row in top
        ],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--variant", default="hybrid", choices=["full", "hybrid", "compact"])
    p.add_argument("--decisions", default="ticks", choices=["ticks", "points"])
    p.add_argument("--profile", type=int, default=0, help="steps profiled per contender (0: none)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    runners = contenders(args, horizon=args.steps + args.warmup + args.profile + 10)
    with steady_heap():
        for r in runners.values():
            r.run(args.warmup, timed=False)
        done = 0
        while done < args.steps:
            chunk = min(50, args.steps - done)
            for r in runners.values():
                r.run(chunk)
            done += chunk
    raw = runners["raw"].steps / runners["raw"].seconds
    result: dict[str, Any] = {"variant": args.variant, "decisions": args.decisions, "steps": args.steps, "adapters": {}}
    for name, r in runners.items():
        rate = r.steps / r.seconds
        row: dict[str, Any] = {"env_steps_per_s": round(rate, 1), "ratio": round(rate / raw, 3)}
        if args.profile:
            row["profile"] = profile(r, args.profile)
        result["adapters"][name] = row
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Env throughput figures for ``townlet bench --env``: single-env steps/s per variant, batched vs looped envs.

Agents act with a uniformly random *masked* policy (vectorised: the argmax of random numbers over allowed
actions), the load a policy sees early in training; the single-env figure is also given for a *committed*
random policy (it repeats its running option and draws only when free) and an *idle* one (every agent
picks Idle: a quiet town, so mostly the env's own cost). Only env calls are timed.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from townlet.env import BatchedTowns, env_config, parallel_env
from townlet.policy.options import Option


@contextmanager
def steady_heap() -> Iterator[None]:
    """Keep the objects built so far out of the garbage collector's full passes while timing.

    A long run freezes its heap once it is set up (``townlet train``, batch workers): otherwise every full
    collection walks the whole heap, a stall of tens of milliseconds that lands in one timed step. The
    frozen objects are handed back to the collector afterwards.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def random_masked(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    """One allowed action per row of ``masks`` (``int8[..., A]``), uniformly at random."""
    return (rng.random(masks.shape) * masks).argmax(axis=-1)


def single_env(
    variant: str, agents: int, steps: int, warmup: int, seed: int, overrides: list[str], policy: str = "random"
) -> dict[str, Any]:
    """Time ``steps`` steps of one PettingZoo env (after ``warmup`` untimed ones).

    ``policy``: ``random`` draws an allowed option every step; ``committed`` repeats the running option and
    draws only when free (an option-level policy that finishes what it starts); ``idle`` always picks Idle
    (a quiet town: mostly the env's own cost).
    """
    env = parallel_env(variant=variant, agents=agents, overrides=[*overrides, f"env.horizon={steps + warmup + 1}"])
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    option = env.sim.world.agents.option
    elapsed = 0.0
    agent_steps = 0
    with steady_heap():
        for i in range(warmup + steps):
            names = env.agents
            actions = {}
            if names:
                choice = random_masked(rng, np.stack([obs[n]["action_mask"] for n in names]))
                if policy == "committed":
                    running = option[: len(names)]  # seat i is slot i (an empty seat's -1 keeps its no-op)
                    choice = np.where(running >= 0, running, choice)
                elif policy == "idle":
                    choice = np.full(len(names), int(Option.IDLE))
                actions = dict(zip(names, choice.tolist(), strict=True))
            t0 = time.perf_counter()
            obs, *_ = env.step(actions)
            if i >= warmup:
                elapsed += time.perf_counter() - t0
                agent_steps += len(actions)
    return {
        "env_steps_per_s": round(steps / elapsed, 1),
        "agent_steps_per_s": round(agent_steps / elapsed, 1),
        "invalid_actions": env.sim.invalid_actions,
        "obs_size": env.core.obs_size,
    }


def single_figures(variant: str, agents: int, steps: int, warmup: int, seed: int, overrides: list[str]) -> dict:
    """One variant's single-env figures under the random, the committed random and the idle policy."""
    drawn = single_env(variant, agents, steps, warmup, seed, overrides)
    held = single_env(variant, agents, steps, warmup, seed, overrides, policy="committed")
    idle = single_env(variant, agents, steps, warmup, seed, overrides, policy="idle")
    return {
        "variant": variant,
        "agents": agents,
        "obs_size": drawn["obs_size"],
        "env_steps_per_s": drawn["env_steps_per_s"],
        "agent_steps_per_s": drawn["agent_steps_per_s"],
        "committed_env_steps_per_s": held["env_steps_per_s"],
        "idle_env_steps_per_s": idle["env_steps_per_s"],
        "invalid_actions": drawn["invalid_actions"] + held["invalid_actions"] + idle["invalid_actions"],
    }


class _Loop:
    """``towns`` single envs stepped one after another under random masked actions."""

    def __init__(self, variant: str, agents: int, towns: int, seed: int, sets: list[str]) -> None:
        self.envs = [parallel_env(variant=variant, agents=agents, overrides=sets) for _ in range(towns)]
        self.obs = [env.reset(seed=seed + k)[0] for k, env in enumerate(self.envs)]

    def run(self, rng: np.random.Generator, steps: int) -> tuple[float, int]:
        elapsed, agent_steps = 0.0, 0
        for _ in range(steps):
            for k, env in enumerate(self.envs):
                names = env.agents
                actions = {}
                if names:
                    choice = random_masked(rng, np.stack([self.obs[k][n]["action_mask"] for n in names]))
                    actions = dict(zip(names, choice.tolist(), strict=True))
                t0 = time.perf_counter()
                self.obs[k], *_ = env.step(actions)
                elapsed += time.perf_counter() - t0
                agent_steps += len(actions)
        return elapsed, agent_steps


class _Batch:
    """A ``BatchedTowns`` under random masked actions."""

    def __init__(self, batch: BatchedTowns, seed: int) -> None:
        self.batch = batch
        batch.reset(seed=seed)

    def run(self, rng: np.random.Generator, steps: int) -> tuple[float, int]:
        b = self.batch
        elapsed, agent_steps = 0.0, 0
        for _ in range(steps):
            actions = np.where(b.alive, random_masked(rng, b.masks), -1)
            t0 = time.perf_counter()
            b.step(actions)
            elapsed += time.perf_counter() - t0
            agent_steps += int(b.alive.sum())
        return elapsed, agent_steps


def batched_vs_loop(
    variant: str, agents: int, towns: int, steps: int, warmup: int, seed: int, overrides: list[str], workers: int
) -> dict[str, Any]:
    """Agent-steps/s of ``BatchedTowns(towns)`` against ``towns`` single envs stepped one after another.

    The batch is timed in process, and (``workers > 0``) with that many forked worker processes beside this
    one. The contenders take turns in chunks of 50 steps, so a busy machine slows them alike and the ratios
    hold.
    """
    sets = [*overrides, f"env.horizon={steps + warmup + 1}"]
    rng = np.random.default_rng(seed)
    runners: dict[str, Any] = {
        "loop": _Loop(variant, agents, towns, seed, sets),
        "batched": _Batch(BatchedTowns(towns, variant=variant, agents=agents, overrides=sets), seed),
    }
    if workers:
        pool = BatchedTowns(towns, variant=variant, agents=agents, overrides=sets, workers=workers)
        runners["workers"] = _Batch(pool, seed)
    totals = {name: [0.0, 0] for name in runners}
    try:
        with steady_heap():
            for runner in runners.values():
                runner.run(rng, warmup)
            done = 0
            while done < steps:
                chunk = min(50, steps - done)
                for name, runner in runners.items():
                    elapsed, agent_steps = runner.run(rng, chunk)
                    totals[name][0] += elapsed
                    totals[name][1] += agent_steps
                done += chunk
    finally:
        for runner in runners.values():
            if isinstance(runner, _Batch):
                runner.batch.close()
    rate = {name: n / seconds for name, (seconds, n) in totals.items()}
    result: dict[str, Any] = {
        "variant": variant,
        "towns": towns,
        "agents": agents,
        "loop_agent_steps_per_s": round(rate["loop"], 1),
        "batched_agent_steps_per_s": round(rate["batched"], 1),
        "speedup": round(rate["batched"] / rate["loop"], 2),
    }
    if workers:
        result |= {
            "workers": workers,
            "workers_agent_steps_per_s": round(rate["workers"], 1),
            "workers_speedup": round(rate["workers"] / rate["loop"], 2),
        }
    return result


def _count(n: int) -> int:
    """Pure-Python busy work: the kind a town's tick is made of."""
    total = 0
    for i in range(n):
        total += i
    return total


def _count_when(go: Any, n: int) -> None:
    go.wait()
    _count(n)


def parallel_capacity(processes: int, work: int = 2_000_000) -> float | None:
    """How many processes' worth of pure-Python work the machine does at once right now (ideal: ``processes``).

    Times ``work`` loop steps in this process, then the same in ``processes`` forked processes started
    together: on a shared virtual machine the answer moves with the neighbours, and with it what worker
    processes can add. None where processes cannot be forked.
    """
    if "fork" not in mp.get_all_start_methods():
        return None
    t0 = time.perf_counter()
    _count(work)
    alone = time.perf_counter() - t0
    ctx = mp.get_context("fork")
    go = ctx.Event()
    procs = [ctx.Process(target=_count_when, args=(go, work), daemon=True) for _ in range(processes)]
    for proc in procs:
        proc.start()
    time.sleep(0.05)  # let them reach the start line
    t0 = time.perf_counter()
    go.set()
    for proc in procs:
        proc.join()
    return round(processes * alone / (time.perf_counter() - t0), 2)


def env_figures(
    variants: list[str],
    agents: int,
    towns: int,
    steps: int,
    warmup: int,
    seed: int,
    overrides: list[str],
    workers: int = 0,
) -> dict[str, Any]:
    """The ``env`` block of ``townlet bench --env``."""
    env_config(variant=variants[0], agents=agents, overrides=overrides)  # fail early on a bad config
    figures: dict[str, Any] = {
        "steps": steps,
        "warmup": warmup,
        "single": [single_figures(v, agents, steps, warmup, seed, overrides) for v in variants],
    }
    # What the machine could give worker processes, just before and just after they ran.
    before = parallel_capacity(workers + 1) if workers else None
    figures["batched"] = [batched_vs_loop(v, agents, towns, steps, warmup, seed, overrides, workers) for v in variants]
    if workers:
        figures["parallel_capacity"] = {
            "processes": workers + 1,
            "before": before,
            "after": parallel_capacity(workers + 1),
        }
    return figures

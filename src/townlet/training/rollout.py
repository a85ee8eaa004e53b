"""Rollout collection: a policy network drives a ``BatchedTowns`` for T ticks; every array comes back ``[T, B]``.

B counts agent slots across the batch (``towns x capacity``); rows of empty slots are ``valid = False``. Actions
are sampled from each town's own ``policy`` random stream (as :class:`~townlet.policy.learned.LearnedPolicy`
does), so a town's trajectory depends only on its seed and the weights, not on which process or batch runs it:
the Ray workers and the single-process trainer see the same towns.

A share of the agents can be left to the built-in scripted policy (action -1; the anneal sets it with
:meth:`Collector.set_scripted_share`): their steps count for the value function and for the advantages of
the learned steps around them, but not for the policy loss (``learned = False``).

An episode truncated at the horizon is bootstrapped: its last reward gets ``gamma * V(final observation)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from townlet.env import BatchedTowns
from townlet.training.windows import TownKpis

if TYPE_CHECKING:
    from townlet.config.loader import LoadedConfig
    from townlet.policy.networks import OptionPolicyNet


@dataclass
class Rollout:
    """T ticks of B agent slots (see the module docstring).

    Attributes:
        obs: ``float32[T, B, D]`` observation before acting.
        masks: ``bool[T, B, A]`` action masks.
        actions: ``int64[T, B]`` option chosen (0 where not valid).
        logprobs: ``float32[T, B]`` its log-probability under the collecting policy.
        values: ``float32[T, B]`` value estimates.
        rewards: ``float32[T, B]`` reward after acting.
        bootstrap: ``float32[T, B]`` ``gamma * V(final observation)`` where the horizon truncated the episode.
        dones: ``bool[T, B]`` the agent's episode ended at this step (exit or horizon).
        valid: ``bool[T, B]`` a living agent acted.
        learned: ``bool[T, B]`` ... and the policy chose (not the scripted share).
        resets: ``bool[T, B]`` recurrent state reset before this step (arrival, fresh episode).
        last_values: ``float32[B]`` value after the last step (bootstrap).
        init_state: LSTM ``(h, c)`` at the first step, each ``[1, B, H]`` (None without an LSTM).
        ticks: Town-ticks simulated (T x towns).
        collect_s: Wall seconds spent collecting.
        env_s: Of which inside ``BatchedTowns.step``.
        episode_returns: Returns of the agent episodes that ended during the rollout.
    """

    obs: np.ndarray
    masks: np.ndarray
    actions: np.ndarray
    logprobs: np.ndarray
    values: np.ndarray
    rewards: np.ndarray
    bootstrap: np.ndarray
    dones: np.ndarray
    valid: np.ndarray
    learned: np.ndarray
    resets: np.ndarray
    last_values: np.ndarray
    init_state: tuple[np.ndarray, np.ndarray] | None
    ticks: int = 0
    collect_s: float = 0.0
    env_s: float = 0.0
    episode_returns: list[float] = field(default_factory=list)

    @property
    def agent_steps(self) -> int:
        """Agent-steps in the rollout (valid rows)."""
        return int(self.valid.sum())

    @staticmethod
    def concat(parts: list[Rollout]) -> Rollout:
        """Join rollouts of the same length along the slot axis (one per Ray worker)."""
        cat = np.concatenate
        init = None
        if parts[0].init_state is not None:
            init = (cat([p.init_state[0] for p in parts], axis=1),  # type: ignore[index]
                    cat([p.init_state[1] for p in parts], axis=1))  # type: ignore[index]
        names = ("obs", "masks", "actions", "logprobs", "values", "rewards", "bootstrap", "dones", "valid", "learned",
                 "resets")
        joined = {n: cat([getattr(p, n) for p in parts], axis=1) for n in names}
        return Rollout(
            **joined, last_values=cat([p.last_values for p in parts]), init_state=init,
            ticks=sum(p.ticks for p in parts), collect_s=max(p.collect_s for p in parts),
            env_s=max(p.env_s for p in parts), episode_returns=[r for p in parts for r in p.episode_returns],
        )


class Collector:
    """Runs ``n_towns`` towns of one config under a policy network and hands back rollouts.

    Args:
        config: YAML config path (None: the shipped town).
        overrides: ``key.path=value`` overrides (stage, variant, population...).
        n_towns: Towns stepped together.
        seed: Town ``i`` starts with run seed ``seed + i`` (later episodes: see :class:`BatchedTowns`).
        gamma: Discount, for the bootstrap at a truncation.
    """

    def __init__(self, config: str | Path | None, overrides: list[str], n_towns: int, seed: int,
                 gamma: float) -> None:
        self.gamma = np.float32(gamma)
        self.towns = BatchedTowns(n_towns, config, overrides=list(overrides), autoreset=True)
        self.loaded: LoadedConfig = self.towns.loaded
        self.towns.reset(seed=seed)
        self.n_towns = n_towns
        self.capacity = self.towns.capacity
        self.slots = n_towns * self.capacity
        self.kpis = TownKpis(self.towns)
        self.scripted = np.zeros((n_towns, self.capacity), dtype=bool)
        self.scripted_share = 0.0
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self._returns = np.zeros(self.slots, dtype=np.float64)

    @property
    def layout(self) -> Any:
        """The observation layout of the towns."""
        return self.towns.layout

    @property
    def n_actions(self) -> int:
        """Size of the action space."""
        return self.towns.actions

    def close(self) -> None:
        """Nothing to release in-process (the Ray collector stops its actors here)."""

    def set_scripted_share(self, share: float) -> None:
        """Leave about ``share`` of every town's slots to the built-in scripted policy (fixed slots, low first)."""
        self.scripted_share = float(share)
        count = int(round(share * self.capacity))
        self.scripted[:] = False
        if count:
            order = np.argsort((np.arange(self.capacity) * 0.618034) % 1.0, kind="stable")  # spread over slots
            self.scripted[:, order[:count]] = True

    def collect(self, net: OptionPolicyNet, ticks: int) -> Rollout:
        """Step every town ``ticks`` times with ``net`` (on the CPU) choosing for the learned slots."""
        import time

        towns, b, d, a = self.towns, self.slots, self.towns.obs_size, self.towns.actions
        ro = _allocate(ticks, b, d, a)
        recurrent = net.lstm is not None
        if recurrent and self.state is None:
            self.state = net.initial_state(b)
        if recurrent:
            assert self.state is not None
            ro.init_state = (self.state[0].numpy().copy(), self.state[1].numpy().copy())
        flat_obs = towns.obs.reshape(b, d)
        flat_masks = towns.masks.reshape(b, a)
        alive = towns.alive.reshape(b)
        arrived = towns.arrived.reshape(b)
        scripted = self.scripted.reshape(b)
        cap = self.capacity
        actions = np.full((self.n_towns, cap), -1, dtype=np.int64)
        flat_actions = actions.reshape(b)
        start = time.perf_counter()
        env_s = 0.0
        for t in range(ticks):
            live = np.flatnonzero(alive)
            ro.obs[t] = flat_obs
            np.not_equal(flat_masks, 0, out=ro.masks[t])
            ro.valid[t] = alive
            ro.resets[t] = arrived & alive
            ro.learned[t] = alive & ~scripted
            with torch.no_grad():
                state = None
                if recurrent:
                    assert self.state is not None
                    state = (self.state[0][:, live], self.state[1][:, live])
                logits, value, state = net(torch.from_numpy(ro.obs[t, live]), torch.from_numpy(ro.masks[t, live]),
                                           state, torch.from_numpy(ro.resets[t, live]) if recurrent else None)
                if recurrent:
                    self.state[0][:, live], self.state[1][:, live] = state  # type: ignore[index]
                logp_all = torch.log_softmax(logits, dim=-1).numpy()
            choice = _sample(np.exp(logp_all), live, cap, towns)
            ro.actions[t, live] = choice
            ro.logprobs[t, live] = logp_all[np.arange(len(live)), choice]
            ro.values[t, live] = value.numpy()
            flat_actions[:] = -1
            flat_actions[live] = choice
            flat_actions[scripted] = -1
            t0 = time.perf_counter()
            towns.step(actions)
            env_s += time.perf_counter() - t0
            self.kpis.update()
            rewards = towns.rewards.reshape(b)
            dones = (towns.terminated | towns.truncated).reshape(b)
            ro.rewards[t] = rewards
            ro.dones[t] = dones & ro.valid[t]
            if towns.reset_towns.any():
                self._bootstrap(net, ro.bootstrap[t])
            self._returns += np.where(ro.valid[t], rewards, 0.0)
            ended = np.flatnonzero(ro.dones[t])
            if len(ended):
                ro.episode_returns.extend(self._returns[ended].tolist())
                self._returns[ended] = 0.0
        with torch.no_grad():
            live = np.flatnonzero(alive)
            if len(live):
                state = None
                if recurrent:
                    assert self.state is not None
                    state = (self.state[0][:, live], self.state[1][:, live])
                resets = torch.from_numpy(arrived[live].copy()) if recurrent else None
                _, value, _ = net(torch.from_numpy(flat_obs[live]), torch.from_numpy(flat_masks[live] != 0), state,
                                  resets)
                ro.last_values[live] = value.numpy()
        ro.ticks = ticks * self.n_towns
        ro.collect_s = time.perf_counter() - start
        ro.env_s = env_s
        return ro

    def _bootstrap(self, net: OptionPolicyNet, out: np.ndarray) -> None:
        """Write ``gamma * V(final observation)`` for the agents truncated at the horizon into ``out``."""
        towns = self.towns
        truncated = (towns.truncated & towns.reset_towns[:, None]).reshape(-1)
        rows = np.flatnonzero(truncated)
        if not len(rows):
            return
        final = towns.final_obs.reshape(self.slots, -1)[rows]
        masks = np.ones((len(rows), towns.actions), dtype=bool)
        with torch.no_grad():
            state = None
            if net.lstm is not None and self.state is not None:
                state = (self.state[0][:, rows], self.state[1][:, rows])
            _, value, _ = net(torch.from_numpy(final), torch.from_numpy(masks), state)
        out[rows] = self.gamma * value.numpy()

    @property
    def window_ticks(self) -> int:
        """Ticks per town since the KPI window opened."""
        return self.kpis.ticks

    def close_window(self) -> np.ndarray:
        """Raw KPI sums of the window (:func:`~townlet.training.windows.window_kpis` turns them into KPIs)."""
        return self.kpis.close_window()


def _sample(probs: np.ndarray, live: np.ndarray, cap: int, towns: BatchedTowns) -> np.ndarray:
    """One option per living row by inverse CDF, each town drawing from its own ``policy`` stream."""
    draws = np.empty(len(live))
    town_of = live // cap
    bounds = np.searchsorted(town_of, np.arange(towns.n_towns + 1))
    for i in range(towns.n_towns):
        lo, hi = bounds[i], bounds[i + 1]
        if hi > lo:
            draws[lo:hi] = towns.towns[i].sim.world.rng.policy.random(hi - lo)
    cumulative = probs.cumsum(axis=1)
    return (cumulative < draws[:, None]).sum(axis=1).clip(0, probs.shape[1] - 1)


def _allocate(t: int, b: int, d: int, a: int) -> Rollout:
    return Rollout(
        obs=np.zeros((t, b, d), np.float32), masks=np.zeros((t, b, a), bool), actions=np.zeros((t, b), np.int64),
        logprobs=np.zeros((t, b), np.float32), values=np.zeros((t, b), np.float32),
        rewards=np.zeros((t, b), np.float32), bootstrap=np.zeros((t, b), np.float32),
        dones=np.zeros((t, b), bool), valid=np.zeros((t, b), bool),
        learned=np.zeros((t, b), bool), resets=np.zeros((t, b), bool), last_values=np.zeros(b, np.float32),
        init_state=None,
    )

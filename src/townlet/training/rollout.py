"""Rollout collection over options as a semi-MDP: agents decide only at decision points, transitions span ticks.

A :class:`Collector` drives a :class:`~townlet.env.BatchedTowns` in decision mode: each batch step every town
runs to its own next decision point, then one forward pass covers exactly the agents that must choose now,
across all towns (inference only for deciding agents). Everybody else's option runs on without a policy call.

A *transition* starts at an agent's decision (observation, mask, option, log-probability, value) and lasts
until its next decision, its exit, or the horizon. It carries the reward of its k ticks discounted per tick,
``R = sum_i gamma**i * r_i`` (the env's ``discounted`` sums, chained across batch steps with ``gamma**ticks``),
its discount ``gamma**k`` and the value it bootstraps with: ``V`` at the next decision, ``V(final
observation)`` when the horizon truncated the episode, nothing after an exit. Per-agent episodes are cut at
exits and arrivals: a newcomer in a slot starts a fresh chain. A transition still open when a rollout ends
is finished in the next one (its log-probability is the one it was sampled with).

Actions are sampled with one random stream per town, seeded by the town's seed, so a town's trajectory depends
only on its seed and the weights, not on which process, batch or Ray worker steps it.
A share of the agents can be left to the built-in scripted policy (action -1; the anneal sets it with
:meth:`Collector.set_scripted_share`): their transitions train the value function, not the policy
(``learned = False``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
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
    """The transitions that finished during one collection, in the order they finished (n rows).

    Attributes:
        obs: ``float32[n, D]`` observation at the decision.
        masks: ``bool[n, A]`` its action mask.
        actions: ``int64[n]`` option chosen (0 for scripted agents).
        logprobs: ``float32[n]`` its log-probability under the collecting policy.
        values: ``float32[n]`` value estimate at the decision.
        rewards: ``float32[n]`` reward of the transition's ticks, discounted per tick (``sum_i gamma**i r_i``).
        discounts: ``float32[n]`` ``gamma**k`` for its k ticks.
        next_values: ``float32[n]`` the value it bootstraps with (0 after an exit).
        ends: ``bool[n]`` the agent's episode ended with it (exit or horizon): no advantage flows back past it.
        next_index: ``int64[n]`` row of the same agent's next transition in this rollout (-1: none yet).
        learned: ``bool[n]`` the policy chose (not the scripted share).
        slots: ``int64[n]`` the agent's slot in the batch (``town * capacity + slot``).
        ticks: ``int64[n]`` k, the ticks it lasted.
        resets: ``bool[n]`` the agent's first decision of an episode (recurrent state starts from zero).
        init_state: LSTM ``(h, c)`` before each transition, ``[1, n, H]`` each (None without an LSTM).
        town_ticks: Town-ticks simulated during the collection (summed over towns).
        collect_s: Wall seconds spent collecting.
        env_s: Of which inside ``BatchedTowns.step``.
        policy_s: Of which in forward passes and sampling.
        episode_returns: Undiscounted returns of the agent episodes that ended during the collection.
        batch_steps: Batch steps taken (each ends at some agent's decision point).
        windows: Raw sums of the KPI windows that closed during the collection, in order
            (:func:`~townlet.training.windows.window_kpis`).
        window_ends: Town-ticks into the collection (summed over towns) at which each window closed.
    """

    obs: np.ndarray
    masks: np.ndarray
    actions: np.ndarray
    logprobs: np.ndarray
    values: np.ndarray
    rewards: np.ndarray
    discounts: np.ndarray
    next_values: np.ndarray
    ends: np.ndarray
    next_index: np.ndarray
    learned: np.ndarray
    slots: np.ndarray
    ticks: np.ndarray
    resets: np.ndarray
    init_state: tuple[np.ndarray, np.ndarray] | None = None
    town_ticks: int = 0
    collect_s: float = 0.0
    env_s: float = 0.0
    policy_s: float = 0.0
    episode_returns: list[float] = field(default_factory=list)
    batch_steps: int = 0
    windows: list[np.ndarray] = field(default_factory=list)
    window_ends: list[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        """Transitions in the rollout."""
        return len(self.actions)

    @staticmethod
    def concat(parts: list[Rollout], slots_per_part: int) -> Rollout:
        """Join rollouts of separate batches (one per Ray worker); slots and row links are renumbered."""
        rows = [p.size for p in parts]
        offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)
        arrays: dict[str, Any] = {}
        for f in fields(Rollout):
            if f.name in ARRAY_FIELDS:
                arrays[f.name] = np.concatenate([getattr(p, f.name) for p in parts])
        arrays["next_index"] = np.concatenate(
            [np.where(p.next_index >= 0, p.next_index + off, -1) for p, off in zip(parts, offsets, strict=True)]
        )
        arrays["slots"] = np.concatenate([p.slots + k * slots_per_part for k, p in enumerate(parts)])
        states = [p.init_state for p in parts if p.init_state is not None]
        if states and len(states) != len(parts):
            raise ValueError("cannot join rollouts of recurrent and feed-forward policies")
        init = None
        if states:
            init = (np.concatenate([h for h, _ in states], axis=1), np.concatenate([c for _, c in states], axis=1))
        return Rollout(
            **arrays,
            init_state=init,
            town_ticks=sum(p.town_ticks for p in parts),
            collect_s=max(p.collect_s for p in parts),
            env_s=max(p.env_s for p in parts),
            policy_s=max(p.policy_s for p in parts),
            episode_returns=[r for p in parts for r in p.episode_returns],
            batch_steps=max(p.batch_steps for p in parts),
            windows=[np.sum(w, axis=0) for w in zip(*(p.windows for p in parts), strict=True)],
            window_ends=[sum(e) for e in zip(*(p.window_ends for p in parts), strict=True)],
        )


ARRAY_FIELDS = (
    "obs",
    "masks",
    "actions",
    "logprobs",
    "values",
    "rewards",
    "discounts",
    "next_values",
    "ends",
    "next_index",
    "learned",
    "slots",
    "ticks",
    "resets",
)


class Collector:
    """Runs ``n_towns`` towns of one config in decision mode under a policy network; hands back rollouts.

    Args:
        config: YAML config path (None: the shipped town).
        overrides: ``key.path=value`` overrides (stage, variant, population...).
        n_towns: Towns stepped together.
        seed: Town ``i`` starts with run seed ``seed + i`` (later episodes: see :class:`BatchedTowns`).
        gamma: Discount per tick.
        workers: Worker processes stepping a share of the towns (``BatchedTowns(workers=...)``).
        window_ticks: Ticks per town of a KPI window (0: a day); windows close on their last tick, whatever
            the rollout length, and come back in :attr:`Rollout.windows`.
    """

    def __init__(
        self,
        config: str | Path | None,
        overrides: list[str],
        n_towns: int,
        seed: int,
        gamma: float,
        workers: int = 0,
        window_ticks: int = 0,
    ) -> None:
        self.gamma = float(gamma)
        self.towns = BatchedTowns(
            n_towns, config, overrides=list(overrides), autoreset=True, workers=workers, decisions="points", gamma=gamma
        )
        self.loaded: LoadedConfig = self.towns.loaded
        self.towns.reset(seed=seed)
        self.n_towns = n_towns
        self.capacity = self.towns.capacity
        self.slots = n_towns * self.capacity
        self.kpis = TownKpis(self.towns)
        self.window = window_ticks or self.loaded.config.time.ticks_per_day
        self.window_pos = 0  # ticks into the open window (the same for every town between collections)
        self.scripted = np.zeros((n_towns, self.capacity), dtype=bool)
        self.scripted_share = 0.0
        b, d, a = self.slots, self.towns.obs_size, self.towns.actions
        # The transition each slot's agent is in (opened at its last decision).
        self.open = np.zeros(b, dtype=bool)
        self.p_obs = np.zeros((b, d), dtype=np.float32)
        self.p_mask = np.zeros((b, a), dtype=bool)
        self.p_action = np.zeros(b, dtype=np.int64)
        self.p_logp = np.zeros(b, dtype=np.float32)
        self.p_value = np.zeros(b, dtype=np.float32)
        self.p_learned = np.zeros(b, dtype=bool)
        self.p_reset = np.zeros(b, dtype=bool)
        self.p_reward = np.zeros(b, dtype=np.float64)  # discounted so far
        self.p_discount = np.ones(b, dtype=np.float64)  # gamma ** ticks so far
        self.p_ticks = np.zeros(b, dtype=np.int64)
        self.fresh = np.ones(b, dtype=bool)  # the slot's agent has not decided yet in its episode
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None  # LSTM state per slot
        self.p_state: tuple[np.ndarray, np.ndarray] | None = None  # ... before the open transition
        self._returns = np.zeros(b, dtype=np.float64)
        self.streams = [np.random.default_rng([seed + i, 0x5EED]) for i in range(n_towns)]  # sampling, per town

    @property
    def layout(self) -> Any:
        """The observation layout of the towns."""
        return self.towns.layout

    @property
    def n_actions(self) -> int:
        """Size of the action space."""
        return self.towns.actions

    def close(self) -> None:
        """Stop the batch's worker processes (the Ray collector stops its actors here)."""
        self.towns.close()

    def set_scripted_share(self, share: float) -> None:
        """Leave about ``share`` of every town's slots to the built-in scripted policy (fixed slots, low first)."""
        self.scripted_share = float(share)
        count = int(round(share * self.capacity))
        self.scripted[:] = False
        if count:
            order = np.argsort((np.arange(self.capacity) * 0.618034) % 1.0, kind="stable")  # spread over slots
            self.scripted[:, order[:count]] = True

    def collect(self, net: OptionPolicyNet, ticks: int) -> Rollout:
        """Step every town exactly ``ticks`` ticks with ``net`` deciding (a town that is through waits for the rest).

        A town's last step may stop between two decision points: the open transitions carry on next time.
        Every town also stops at each KPI window's last tick, where the window is closed.
        """
        towns, b = self.towns, self.slots
        out = _Transitions(towns.obs_size, towns.actions)
        recurrent = net.lstm is not None
        if recurrent and self.state is None:
            self.state = net.initial_state(b)
            hidden = net.spec.hidden
            self.p_state = (np.zeros((b, hidden), np.float32), np.zeros((b, hidden), np.float32))
        flat_obs = towns.obs.reshape(b, -1)
        flat_masks = towns.masks.reshape(b, -1)
        alive, deciding = towns.alive.reshape(b), towns.deciding.reshape(b)
        scripted = self.scripted.reshape(b)
        actions = np.zeros((self.n_towns, self.capacity), dtype=np.int64)
        flat_actions = actions.reshape(b)
        town_of = np.arange(b) // self.capacity
        done = np.zeros(self.n_towns, dtype=np.int64)
        end = 0  # the towns' common goal this stretch: the rollout's end or the window's, whichever comes first
        windows: list[np.ndarray] = []
        window_ends: list[int] = []
        steps = 0
        env_s = policy_s = 0.0
        start = time.perf_counter()
        prev = np.full(b, -1, dtype=np.int64)  # each slot's last finished transition in this rollout (chain)
        while True:
            if (done >= end).all():
                if end and (self.window_pos + end) % self.window == 0:
                    windows.append(self.kpis.close_window())
                    window_ends.append(end * self.n_towns)
                if end >= ticks:
                    break
                end = min(ticks, end + self.window - (self.window_pos + end) % self.window)
            remaining = end - done
            t0 = time.perf_counter()
            stepping = remaining > 0
            rows = np.flatnonzero(deciding & alive & stepping[town_of])
            if len(rows):
                masks = flat_masks[rows] != 0
                obs = flat_obs[rows]
                with torch.no_grad():
                    state = None
                    if recurrent:
                        assert self.state is not None and self.p_state is not None
                        reset = torch.from_numpy(self.fresh[rows].copy())
                        keep = (~reset).float().view(1, -1, 1)
                        state = (self.state[0][:, rows] * keep, self.state[1][:, rows] * keep)
                        before = (state[0][0].numpy().copy(), state[1][0].numpy().copy())
                    logits, value, state = net(torch.from_numpy(obs), torch.from_numpy(masks), state)
                    if recurrent:
                        assert self.state is not None and state is not None
                        self.state[0][:, rows], self.state[1][:, rows] = state
                    logp_all = torch.log_softmax(logits, dim=-1).numpy()
                values = value.numpy()
                choice = _sample(np.exp(logp_all), rows, self.capacity, self.streams)
                # The decision closes the agent's previous transition and opens the next.
                closing = rows[self.open[rows]]
                if len(closing):
                    nxt = np.zeros(b, dtype=np.float32)
                    nxt[rows] = values
                    self._finish(out, closing, nxt[closing], ends=False, prev=prev)
                opening = rows
                self.open[opening] = True
                self.p_obs[opening] = obs
                self.p_mask[opening] = masks
                learned = ~scripted[opening]
                self.p_action[opening] = np.where(learned, choice, 0)
                self.p_logp[opening] = np.where(learned, logp_all[np.arange(len(rows)), choice], 0.0)
                self.p_value[opening] = values
                self.p_learned[opening] = learned
                self.p_reset[opening] = self.fresh[opening]
                self.p_reward[opening] = 0.0
                self.p_discount[opening] = 1.0
                self.p_ticks[opening] = 0
                if recurrent:
                    assert self.p_state is not None
                    self.p_state[0][opening], self.p_state[1][opening] = before
                self.fresh[opening] = False
                flat_actions[rows] = np.where(scripted[rows], -1, choice)
            flat_actions[scripted] = -1
            t1 = time.perf_counter()
            towns.step(actions, np.where(stepping, remaining, -1))
            t2 = time.perf_counter()
            env_s += t2 - t1
            policy_s += t1 - t0
            steps += 1
            done += towns.ticks
            self.kpis.update()
            self._accumulate(town_of)
            self._episode_ends(net, out, prev)
        self.window_pos = (self.window_pos + ticks) % self.window
        ro = out.rollout(recurrent)
        ro.town_ticks = ticks * self.n_towns
        ro.windows, ro.window_ends = windows, window_ends
        ro.collect_s = time.perf_counter() - start
        ro.env_s, ro.policy_s, ro.batch_steps = env_s, policy_s, steps
        ro.episode_returns = out.returns
        return ro

    def _accumulate(self, town_of: np.ndarray) -> None:
        """Fold the step's discounted rewards into every open transition (chained with ``gamma ** ticks``)."""
        towns = self.towns
        discounted = towns.discounted.reshape(-1).astype(np.float64)
        rewards = towns.rewards.reshape(-1)
        ticks = towns.ticks[town_of]
        live = self.open
        self.p_reward[live] += self.p_discount[live] * discounted[live]
        self.p_discount[live] *= self.gamma ** ticks[live]
        self.p_ticks[live] += ticks[live]
        self._returns += np.where(live, rewards, 0.0)

    def _episode_ends(self, net: OptionPolicyNet, out: _Transitions, prev: np.ndarray) -> None:
        """Finish the transitions of agents that left (no bootstrap) or hit the horizon (``V(final obs)``)."""
        towns = self.towns
        left = np.flatnonzero(towns.terminated.reshape(-1) & self.open)
        if len(left):
            self._finish(out, left, np.zeros(len(left), np.float32), ends=True, prev=prev)
        truncated = np.flatnonzero((towns.truncated & towns.reset_towns[:, None]).reshape(-1) & self.open)
        if len(truncated):
            final = towns.final_obs.reshape(self.slots, -1)[truncated]
            masks = np.ones((len(truncated), towns.actions), dtype=bool)
            with torch.no_grad():
                state = None
                if net.lstm is not None and self.state is not None:
                    state = (self.state[0][:, truncated], self.state[1][:, truncated])
                _, value, _ = net(torch.from_numpy(final), torch.from_numpy(masks), state)
            self._finish(out, truncated, value.numpy(), ends=True, prev=prev)
        arrived = towns.arrived.reshape(-1)
        if arrived.any():  # a newcomer (or a fresh episode) starts its own chain
            self.fresh[arrived] = True
            prev[arrived] = -1
            self.open[arrived] = False

    def _finish(
        self, out: _Transitions, slots: np.ndarray, next_values: np.ndarray, ends: bool, prev: np.ndarray
    ) -> None:
        """Close the open transitions of ``slots``, append them to ``out`` and link each agent's chain."""
        first = out.append(self, slots, next_values, ends)
        rows = np.arange(first, first + len(slots))
        linked = prev[slots]
        has = linked >= 0
        out.link(linked[has], rows[has])
        prev[slots] = -1 if ends else rows
        self.open[slots] = False
        if ends:
            out.returns.extend(self._returns[slots].tolist())
            self._returns[slots] = 0.0


class _Transitions:
    """Growing column lists of finished transitions (joined into a :class:`Rollout` at the end)."""

    def __init__(self, obs_size: int, actions: int) -> None:
        self.cols: dict[str, list[np.ndarray]] = {name: [] for name in ARRAY_FIELDS}
        self.states: list[tuple[np.ndarray, np.ndarray]] = []
        self.n = 0
        self.links: list[tuple[np.ndarray, np.ndarray]] = []
        self.returns: list[float] = []
        self.obs_size, self.actions = obs_size, actions

    def append(self, c: Collector, slots: np.ndarray, next_values: np.ndarray, ends: bool) -> int:
        """Append the open transitions of ``slots``; returns the row of the first."""
        first = self.n
        cols = self.cols
        cols["obs"].append(c.p_obs[slots])
        cols["masks"].append(c.p_mask[slots])
        cols["actions"].append(c.p_action[slots])
        cols["logprobs"].append(c.p_logp[slots])
        cols["values"].append(c.p_value[slots])
        cols["rewards"].append(c.p_reward[slots].astype(np.float32))
        cols["discounts"].append(c.p_discount[slots].astype(np.float32))
        cols["next_values"].append(np.asarray(next_values, dtype=np.float32))
        cols["ends"].append(np.full(len(slots), ends))
        cols["next_index"].append(np.full(len(slots), -1, dtype=np.int64))
        cols["learned"].append(c.p_learned[slots])
        cols["slots"].append(slots.astype(np.int64))
        cols["ticks"].append(c.p_ticks[slots].copy())
        cols["resets"].append(c.p_reset[slots])
        if c.p_state is not None:
            self.states.append((c.p_state[0][slots], c.p_state[1][slots]))
        self.n += len(slots)
        return first

    def link(self, rows: np.ndarray, following: np.ndarray) -> None:
        """``next_index[rows] = following`` (set when the rollout is assembled)."""
        if len(rows):
            self.links.append((rows, following))

    def rollout(self, recurrent: bool) -> Rollout:
        empty = {"obs": np.zeros((0, self.obs_size), np.float32), "masks": np.zeros((0, self.actions), bool)}
        arrays: dict[str, Any] = {
            name: np.concatenate(chunks) if chunks else empty.get(name, np.zeros(0))
            for name, chunks in self.cols.items()
        }
        for name, dtype in (
            ("actions", np.int64),
            ("next_index", np.int64),
            ("slots", np.int64),
            ("ticks", np.int64),
            ("ends", bool),
            ("learned", bool),
            ("resets", bool),
        ):
            arrays[name] = arrays[name].astype(dtype)
        for rows, following in self.links:
            arrays["next_index"][rows] = following
        init = None
        if recurrent and self.states:
            h, c = (np.concatenate([state[i] for state in self.states])[None] for i in range(2))
            init = (h, c)
        return Rollout(**arrays, init_state=init)


def _sample(probs: np.ndarray, rows: np.ndarray, cap: int, streams: list[np.random.Generator]) -> np.ndarray:
    """One option per deciding row by inverse CDF, each town drawing from its own stream."""
    draws = np.empty(len(rows))
    town_of = rows // cap
    bounds = np.searchsorted(town_of, np.arange(len(streams) + 1))
    for i, stream in enumerate(streams):
        lo, hi = bounds[i], bounds[i + 1]
        if hi > lo:
            draws[lo:hi] = stream.random(hi - lo)
    cumulative = probs.cumsum(axis=1)
    return (cumulative < draws[:, None]).sum(axis=1).clip(0, probs.shape[1] - 1)

"""``TownletParallelEnv``: the PettingZoo ``ParallelEnv`` over one town (see ``townlet.env`` for its table)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from townlet.config.loader import LoadedConfig
from townlet.env.core import Decisions, TownCore
from townlet.env.render import ansi_frame, rgb_frame

SEED_BOUND = 2**31


class TownletParallelEnv(ParallelEnv):
    """One town as a PettingZoo env; see the ``townlet.env`` module docstring for the full contract.

    Args:
        loaded: The config (variant, population, horizon and action level already applied).
        render_mode: ``"rgb_array"``, ``"ansi"`` or None.
        decisions: ``"ticks"`` (a step is a tick, every agent acts) or ``"points"`` (decision mode: a step
            lasts until some agent must decide; see :mod:`townlet.env.core`).
        gamma: Discount per tick of ``infos[agent]["discounted_reward"]`` in decision mode.
    """

    metadata = {"name": "townlet_v0", "render_modes": ["rgb_array", "ansi"], "is_parallelizable": True,
                "render_fps": 4}

    def __init__(self, loaded: LoadedConfig, render_mode: str | None = None, decisions: Decisions = "ticks",
                 gamma: float = 0.99) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None")
        self.loaded = loaded
        self.render_mode = render_mode
        self.core = TownCore(loaded, decisions=decisions, gamma=gamma)
        self.decisions = decisions
        self.variant = self.core.layout.variant
        self.layout = self.core.layout
        self._observation_space = spaces.Dict({
            "observation": spaces.Box(-1.0, 1.0, shape=(self.core.obs_size,), dtype=np.float32),
            "action_mask": spaces.Box(0, 1, shape=(self.core.actions,), dtype=np.int8),
        })
        self._action_space = spaces.Discrete(self.core.actions)
        self.state_space = spaces.Box(-1.0, 1.0, shape=(self.core.capacity, self.core.obs_size), dtype=np.float32)
        self._seeds = np.random.default_rng(loaded.config.seed)
        self._next_seed: int | None = loaded.config.seed
        self._actions = np.full(self.core.capacity, -1, dtype=np.int64)
        self._slot_of: dict[str, int] = {}
        self.agents: list[str] = []
        self.possible_agents = [n for n in self.core.sim.world.agents.ids if n is not None]
        self.seed_used: int | None = None

    # -- spaces -------------------------------------------------------------------------------------

    def observation_space(self, agent: str) -> spaces.Dict:
        """The same Dict space for every agent: ``observation`` (float32) and ``action_mask`` (int8)."""
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Discrete:
        """The same Discrete space for every agent (options, or primitives by config)."""
        return self._action_space

    # -- the loop -----------------------------------------------------------------------------------

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode; ``seed`` seeds the town (without it: the next seed of this env's seed sequence)."""
        if seed is not None:
            self._seeds = np.random.default_rng(seed)
            run_seed = int(seed)
        elif self._next_seed is not None:
            run_seed = self._next_seed
        else:
            run_seed = int(self._seeds.integers(SEED_BOUND))
        self._next_seed = None
        self.seed_used = run_seed
        core = self.core
        core.reset(run_seed)
        ids = core.sim.world.agents.ids
        live = core.buffers.alive.nonzero()[0]
        self.agents = [str(ids[s]) for s in live]
        self._slot_of = {name: int(s) for name, s in zip(self.agents, live, strict=True)}
        self.possible_agents = list(self.agents)
        obs = self._observations(live)
        infos: dict[str, dict] = {name: {} for name in self.agents}
        if core.points:
            for name in self.agents:
                infos[name] = {"ticks": 0, "must_decide": True, "discounted_reward": 0.0}
        return obs, infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Apply the agents' actions for one tick (or, in decision mode, until somebody must decide).

        Agents without an action follow the built-in policy meanwhile; in decision mode an agent that need
        not decide continues its running option whatever it sends.
        """
        core, act, slot_of = self.core, self._actions, self._slot_of
        act.fill(-1)
        for name, action in actions.items():
            slot = slot_of.get(name)
            if slot is not None and action is not None:
                act[slot] = int(action)
        core.step(act)
        b = core.buffers
        before = self.agents
        reward = b.reward.tolist()
        rewards = {name: reward[slot_of[name]] for name in before}
        terminations = dict.fromkeys(before, False)
        truncations = dict.fromkeys(before, core.done)
        infos: dict[str, dict] = {name: {} for name in before}
        obs = {}
        if core.exits:
            for name, reason in core.exits.values():
                if name in slot_of:
                    terminations[name] = True
                    infos[name] = {"exit_reason": reason}
                    obs[name] = {"observation": np.zeros(core.obs_size, dtype=np.float32),
                                 "action_mask": np.zeros(core.actions, dtype=np.int8)}
                    del slot_of[name]
        arrivals = core.changed and bool(b.arrived.any())
        if arrivals and not core.done:  # an arrival on the last tick never joins the episode
            for slot in b.arrived.nonzero()[0]:
                name = str(core.names[slot])
                slot_of[name] = int(slot)
                self.possible_agents.append(name)
                rewards[name], terminations[name], truncations[name], infos[name] = 0.0, False, core.done, {}
        if core.points:
            self._decision_infos(infos, before, slot_of)
        live = b.alive.nonzero()[0]
        if core.done:
            live = live[~b.arrived[live]]
            obs.update(self._observations(live))
            self.agents = []
        else:
            obs.update(self._observations(live))
            if core.exits or arrivals:
                self.agents = [str(core.names[s]) for s in live]
        return obs, rewards, terminations, truncations, infos

    def _decision_infos(self, infos: dict[str, dict], before: list[str], slot_of: dict[str, int]) -> None:
        """Decision mode: ticks passed, who must decide next, the discounted reward of each agent's step."""
        core = self.core
        b = core.buffers
        discounted = b.discounted.tolist()
        deciding = b.deciding.tolist()
        leavers = {name: slot for slot, (name, _) in core.exits.items()}
        for name, info in infos.items():
            slot = slot_of.get(name, leavers.get(name))
            arrived = name not in before
            info["ticks"] = core.last_ticks
            info["must_decide"] = bool(slot is not None and name in slot_of and deciding[slot] and not core.done)
            info["discounted_reward"] = 0.0 if arrived or slot is None else float(discounted[slot])

    def _observations(self, live: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        b, names = self.core.buffers, self.core.names
        obs, mask = b.obs[live], b.mask[live]
        rows = zip(live.tolist(), obs, mask, strict=True)
        return {str(names[s]): {"observation": o, "action_mask": m} for s, o, m in rows}

    # -- rendering ----------------------------------------------------------------------------------

    def render(self) -> np.ndarray | str | None:
        """An RGB frame of the town (``rgb_array``) or a text frame (``ansi``); None without a render mode."""
        world = self.core.sim.world
        if self.render_mode == "rgb_array":
            return rgb_frame(world, self.loaded.config.env.render_tile_px)
        if self.render_mode == "ansi":
            return ansi_frame(world)
        return None

    def close(self) -> None:
        """Nothing to release."""

    def state(self) -> np.ndarray:
        """The global state for centralised critics: every slot's observation, stacked (``float32[C, D]``)."""
        return self.core.buffers.obs.copy()

    @property
    def sim(self) -> Any:
        """The current episode's :class:`~townlet.sim.Simulation` (for inspection and tests)."""
        return self.core.sim

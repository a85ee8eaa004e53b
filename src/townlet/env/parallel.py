"""``TownletParallelEnv``: the PettingZoo ``ParallelEnv`` over one town, with fixed seats (see ``townlet.env``).

The API's agents are *seats* (``seat_0`` ... ``seat_{S-1}``, S = ``population.agents`` by default): seat
``i`` is the town's slot ``i``, and since the town puts a newcomer in its lowest free slot, a newcomer takes
the lowest free seat. Every seat is in ``env.agents`` from ``reset`` to the end of the episode, so
``possible_agents`` never changes and no agent id is ever revived (PettingZoo's and RLlib's rule). An
occupant's stay is an episode *within* its seat, marked in ``infos``: the step it leaves carries its terminal
reward, ``exit_reason`` and ``left`` (its id); an empty seat then observes zeros, gets reward 0 and may only
send the no-op (Idle, or wait with primitives), which is ignored (SuperSuit's black-death convention, built
in); the step a newcomer sits down carries ``arrived`` and its first observation. ``infos[seat]["person"]``
always names the occupant (None while empty). The adapters of :mod:`townlet.env.wrappers` turn these marks
into each library's own episode boundaries.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from townlet.config.loader import LoadedConfig
from townlet.env.core import Decisions, TownCore
from townlet.env.render import ansi_frame, rgb_frame
from townlet.policy.options import Option
from townlet.policy.primitives import Primitive
from townlet.sim.pickling import KeepsViews

SEED_BOUND = 2**31
SEAT_PREFIX = "seat_"
RENDER_MODES = ("human", "rgb_array", "ansi")


def seat_name(slot: int) -> str:
    """The API id of the seat over town slot ``slot``."""
    return f"{SEAT_PREFIX}{slot}"


class TownletParallelEnv(KeepsViews, ParallelEnv):
    """One town as a PettingZoo env; see the ``townlet.env`` module docstring for the full contract.

    Args:
        loaded: The config (variant, population, horizon and action level already applied).
        render_mode: ``"human"`` (the text frame printed every step), ``"rgb_array"``, ``"ansi"`` or None.
        decisions: ``"ticks"`` (a step is a tick, every agent acts) or ``"points"`` (decision mode: a step
            lasts until some agent must decide; see :mod:`townlet.env.core`).
        gamma: Discount per tick of ``infos[seat]["discounted_reward"]`` in decision mode.
        seats: How many seats (API agents); ``population.agents`` when None, at most the town's capacity.
        max_cycles: Truncate every seat after this many steps (and at ``env.horizon`` ticks in any case).
        scripted_fallback: Let occupied seats missing from the action dict follow the built-in scripted
            routine quietly. Without it they still do (so nobody stands frozen) but the env warns, once.

    Attributes:
        scripted_fallbacks: Agent-steps driven by the scripted routine since the env was built (a missing
            action, or an agent without a seat); 0 when a learner drives everybody.
        exits: Occupants who left their seats since the env was built.
    """

    metadata = {"name": "townlet_v1", "render_modes": list(RENDER_MODES), "is_parallelizable": True, "render_fps": 4}

    def __init__(
        self,
        loaded: LoadedConfig,
        render_mode: str | None = None,
        decisions: Decisions = "ticks",
        gamma: float = 0.99,
        *,
        seats: int | None = None,
        max_cycles: int | None = None,
        scripted_fallback: bool = False,
    ) -> None:
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be one of {list(RENDER_MODES)} or None")
        if max_cycles is not None and max_cycles < 1:
            raise ValueError(f"max_cycles must be at least 1 (or None), not {max_cycles}")
        self.loaded = loaded
        self.render_mode = render_mode
        self.core = TownCore(loaded, decisions=decisions, gamma=gamma)
        capacity = self.core.capacity
        n = loaded.config.population.agents if seats is None else int(seats)
        if not 1 <= n <= capacity:
            raise ValueError(f"seats must lie in 1..{capacity} (the town's capacity, population.capacity), not {n}")
        self.seats = n
        self.decisions = decisions
        self.max_cycles = max_cycles
        self.scripted_fallback = scripted_fallback
        self.variant = self.core.layout.variant
        self.layout = self.core.layout
        size, actions = self.core.obs_size, self.core.actions
        self._observation_space = spaces.Dict(
            {
                "observation": spaces.Box(-1.0, 1.0, shape=(size,), dtype=np.float32),
                "action_mask": spaces.Box(0, 1, shape=(actions,), dtype=np.int8),
            }
        )
        self._action_space = spaces.Discrete(actions)
        self.state_space = spaces.Box(-1.0, 1.0, shape=(capacity, size), dtype=np.float32)
        self.noop = int(Primitive.WAIT if self.core.primitives else Option.IDLE)
        self.possible_agents = [seat_name(i) for i in range(n)]
        self.agents: list[str] = []
        self._vacant_mask = np.zeros(actions, dtype=np.int8)
        self._vacant_mask[self.noop] = 1
        self._vacant_obs = np.zeros(size, dtype=np.float32)
        self._vacant_mask.flags.writeable = False
        self._vacant_obs.flags.writeable = False
        self._actions = np.full(capacity, -1, dtype=np.int64)
        self._seeds: np.random.Generator | None = None
        self.seed_used: int | None = None
        self.cycles = 0
        self.scripted_fallbacks = 0
        self.exits = 0
        self._invalid_before = 0  # masked actions ignored in earlier episodes
        self._warned = False

    # -- spaces -------------------------------------------------------------------------------------

    def observation_space(self, agent: str) -> spaces.Dict:
        """The same Dict space for every seat: ``observation`` (float32) and ``action_mask`` (int8)."""
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Discrete:
        """The same Discrete space for every seat (options, or primitives by config)."""
        return self._action_space

    # -- who sits where -----------------------------------------------------------------------------

    def person(self, seat: str) -> str | None:
        """The town id of the agent in ``seat`` (None while it is empty)."""
        return self.core.sim.world.agents.ids[self.possible_agents.index(seat)]

    @property
    def invalid_actions(self) -> int:
        """Masked actions the town ignored since the env was built (0 when every agent follows its mask)."""
        return self._invalid_before + self.core.sim.invalid_actions

    def counters(self) -> dict[str, int]:
        """``scripted_fallbacks``, ``invalid_actions`` and ``exits`` (occupants who left) since the env was built."""
        return {
            "scripted_fallbacks": self.scripted_fallbacks,
            "invalid_actions": self.invalid_actions,
            "exits": self.exits,
        }

    # -- the loop -----------------------------------------------------------------------------------

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Start an episode in a fresh town seeded with ``seed``.

        Without a seed the town's seed is drawn from this env's seed sequence: the one ``reset(seed=s)``
        started, or, before any seed was given, one from fresh entropy (so copies of an env differ).
        """
        if seed is not None:
            self._seeds = np.random.default_rng(seed)
            run_seed = int(seed)
        else:
            if self._seeds is None:
                self._seeds = np.random.default_rng()
            run_seed = int(self._seeds.integers(SEED_BOUND))
        self.seed_used = run_seed
        self._invalid_before += self.core.sim.invalid_actions
        self.core.reset(run_seed)
        self.cycles = 0
        self.agents = list(self.possible_agents)
        obs = self._observations()
        ids = self.core.sim.world.agents.ids
        infos: dict[str, dict] = {seat: {"person": ids[i]} for i, seat in enumerate(self.agents)}
        if self.core.points:
            deciding = self.core.buffers.deciding
            for i, seat in enumerate(self.agents):
                infos[seat].update(ticks=0, must_decide=bool(deciding[i]), discounted_reward=0.0)
        self._draw()
        return obs, infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Apply the seats' actions for one tick (or, in decision mode, until somebody must decide).

        Raises:
            RuntimeError: when the episode is over (call :meth:`reset`).
        """
        rewards, terminations, truncations, infos = self.advance(actions)
        obs = self._observations()
        self._draw()
        return obs, rewards, terminations, truncations, infos

    def advance(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict]:
        """:meth:`step` without building the observation dicts: ``(rewards, terminations, truncations, infos)``.

        For adapters that read the observations as arrays (:meth:`seat_rows`) instead.
        """
        if not self.agents:
            raise RuntimeError("the episode is over (every seat was truncated): call reset() first")
        core = self.core
        b = core.buffers
        self._fill_actions(actions)
        core.step(self._actions)
        self.cycles += 1
        done = core.done or (self.max_cycles is not None and self.cycles >= self.max_cycles)
        seats, n = self.agents, self.seats
        alive = b.alive[:n]
        rewards = dict(zip(seats, np.where(alive | b.exited[:n], b.reward[:n], 0.0).tolist(), strict=True))
        terminations = dict.fromkeys(seats, False)
        truncations = dict.fromkeys(seats, done)
        ids = core.sim.world.agents.ids
        infos: dict[str, dict] = {seat: {"person": ids[i]} for i, seat in enumerate(seats)}
        if core.changed:
            for slot, (name, reason) in core.exits.items():
                if slot < n:
                    infos[seats[slot]].update(exit_reason=reason, left=name)
                    self.exits += 1
            for slot in (b.arrived[:n] & ~b.exited[:n]).nonzero()[0].tolist():
                infos[seats[slot]]["arrived"] = True
                rewards[seats[slot]] = 0.0  # the step closes the seat's empty spell; the newcomer starts now
            for slot in (b.arrived[:n] & b.exited[:n]).nonzero()[0].tolist():
                infos[seats[slot]]["arrived"] = True  # left and refilled in one step: the reward is the leaver's
        if core.points:
            self._decision_infos(infos, done)
        if done:
            counters = self.counters()
            for info in infos.values():
                info["counters"] = counters
            self.agents = []
        return rewards, terminations, truncations, infos

    def _fill_actions(self, actions: dict[str, Any]) -> None:
        """The slot-indexed action array: each occupied seat's action; -1 (scripted) where one is missing."""
        act, n = self._actions, self.seats
        act.fill(-1)
        b = self.core.buffers
        missing = []
        for i, seat in enumerate(self.possible_agents):
            action = actions.get(seat)
            if not b.alive[i]:
                continue  # an empty seat: its no-op is ignored
            if action is not None:
                act[i] = int(action)
            elif self.core.points and not b.deciding[i]:
                act[i] = self.noop  # not at a decision point: it continues its option whatever it sends
            else:
                missing.append(seat)
        unseated = int(np.count_nonzero(b.alive[n:]))
        if missing or unseated:
            self.scripted_fallbacks += len(missing) + unseated
            if not self._warned and (unseated or not self.scripted_fallback):
                self._warned = True
                what = (
                    f"no action for {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"
                    if missing
                    else f"{unseated} agent(s) in the town beyond the env's {n} seats"
                )
                warnings.warn(
                    f"townlet env: {what}: the built-in scripted routine drives them this step, not your policy "
                    f"(env.scripted_fallbacks counts such agent-steps). Send an action for every seat in "
                    f"env.agents, pass scripted_fallback=True to allow this quietly, or raise seats= (up to "
                    f"{self.core.capacity}). This warning is shown once.",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def _decision_infos(self, infos: dict[str, dict], done: bool) -> None:
        """Decision mode: ticks passed, who must decide next, the discounted reward of each seat's step."""
        core = self.core
        b = core.buffers
        n = self.seats
        discounted = np.where(b.alive[:n] | b.exited[:n], b.discounted[:n], 0.0)
        discounted[b.arrived[:n] & ~b.exited[:n]] = 0.0
        deciding = (b.deciding[:n] & b.alive[:n] & (not done)).tolist()
        for info, d, r in zip(infos.values(), deciding, discounted.tolist(), strict=True):
            info["ticks"] = core.last_ticks
            info["must_decide"] = d
            info["discounted_reward"] = r

    def seat_rows(self, obs: np.ndarray, mask: np.ndarray) -> None:
        """Write every seat's observation (``[S, D]``) and action mask (``[S, A]``, any numeric dtype).

        An empty seat's row is zeros and its mask the no-op alone.
        """
        b, n = self.core.buffers, self.seats
        np.copyto(obs, b.obs[:n])
        np.copyto(mask, b.mask[:n])
        alive = b.alive[:n]
        if not alive.all():
            obs[~alive] = 0.0
            mask[~alive] = self._vacant_mask

    def _observations(self) -> dict[str, dict[str, np.ndarray]]:
        n = self.seats
        obs = np.empty((n, self.core.obs_size), dtype=np.float32)
        mask = np.empty((n, self.core.actions), dtype=np.int8)
        self.seat_rows(obs, mask)
        return {
            seat: {"observation": o, "action_mask": m}
            for seat, o, m in zip(self.possible_agents, obs, mask, strict=True)
        }

    # -- rendering ----------------------------------------------------------------------------------

    def render(self) -> np.ndarray | str | None:
        """An RGB frame (``rgb_array``), a text frame (``ansi``), or the text frame printed (``human``)."""
        world = self.core.sim.world
        if self.render_mode == "rgb_array":
            return rgb_frame(world, self.loaded.config.env.render_tile_px)
        if self.render_mode == "ansi":
            return ansi_frame(world)
        if self.render_mode == "human":
            sys.stdout.write(ansi_frame(world))
            sys.stdout.flush()
        return None

    def _draw(self) -> None:
        if self.render_mode == "human":
            self.render()

    def close(self) -> None:
        """Nothing to release."""

    def state(self) -> np.ndarray:
        """The global state for centralised critics: every slot's observation, stacked (``float32[C, D]``)."""
        return self.core.buffers.obs.copy()

    @property
    def sim(self) -> Any:
        """The current episode's :class:`~townlet.sim.Simulation` (for inspection and tests)."""
        return self.core.sim

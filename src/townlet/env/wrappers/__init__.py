"""Adapters from the Townlet env to what RL libraries expect: seat episodes, flat observations, vector envs.

The env (:mod:`townlet.env`) keeps PettingZoo's rules: fixed seats that never terminate mid-episode, with an
occupant's stay marked in ``infos``. Libraries that train on rows of transitions need those stays as their
own episode boundaries, and most want one flat ``Box`` observation. Here:

- :class:`SeatEpisodes` (a PettingZoo ``ParallelEnv``): every seat present every step, a seat's
  ``terminations`` set the step its occupant leaves (with the terminal reward) and the step a newcomer sits
  down in an empty seat (closing the empty spell, reward 0), and, with ``flat=True`` (the default), a
  ``Box(-1, 1, (D + A,))`` observation: the observation with the action mask (0/1) appended, where
  :func:`action_masks` finds it. Feed it to SuperSuit's ``pettingzoo_env_to_vec_env_v1`` (no
  ``black_death_v3`` needed: empty seats already observe zeros) or TorchRL's ``PettingZooWrapper``
  (``flat=False, numeric_infos=True``; see :mod:`townlet.env.wrappers.torchrl`).
- :class:`TownsVectorEnv` (a Gymnasium ``VectorEnv``) and :class:`SeatRows` under it: ``BatchedTowns`` as
  ``N × S`` rows (town-major, seat-minor), the same flat observation and seat boundaries, autoreset at the
  horizon in the same step with the final observations in ``infos["final_obs"]``. The SB3 face of the same
  rows is :class:`townlet.env.wrappers.sb3.TownsVecEnv`.
- :mod:`townlet.env.wrappers.sb3` (MaskablePPO's ``action_masks()``), :mod:`townlet.env.wrappers.rllib`
  (a ``MultiAgentEnv`` for RLlib's new API stack with its action-masking module),
  :mod:`townlet.env.wrappers.torchrl`: these import their library and need ``townlet[ecosystem]``.

Decision mode (``decisions="points"``) passes through every adapter: a step lasts until somebody must decide,
and the masks let the others only continue. The libraries discount per step, not per tick; ``infos`` keep
``ticks`` and ``discounted_reward`` for a learner that discounts per tick (examples/cleanrl_ppo.py does).
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from townlet.env.batched import BatchedTowns
from townlet.env.parallel import TownletParallelEnv
from townlet.lifecycle.exits import REASONS
from townlet.policy.options import Option
from townlet.policy.primitives import Primitive
from townlet.sim.pickling import KeepsViews

ECOSYSTEM_EXTRA = "ecosystem"


def require(module: str, what: str) -> Any:
    """Import ``module`` or stop with one line naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{what} needs {module.split('.')[0]} (pip install 'townlet[{ECOSYSTEM_EXTRA}]'): "
                          f"{exc}") from None


def flat_space(obs_size: int, actions: int) -> spaces.Box:
    """The flat observation: ``float32[D + A]`` in [-1, 1], the action mask (0/1) in the last ``A`` entries."""
    return spaces.Box(-1.0, 1.0, shape=(obs_size + actions,), dtype=np.float32)


def action_masks(flat_obs: np.ndarray, actions: int) -> np.ndarray:
    """``bool[..., A]``: the action masks carried in the last ``actions`` entries of flat observations."""
    return flat_obs[..., -actions:] > 0.5


class SeatEpisodes(KeepsViews, ParallelEnv):
    """The env with each occupant's stay as a seat episode in ``terminations``, every seat present every step.

    Not for PettingZoo's ``parallel_api_test``: a seat that terminates goes on (with the next occupant, or
    empty), which is what vector envs (SuperSuit, TorchRL) want and what PettingZoo calls a revival.

    Args:
        env: The Townlet env (:func:`townlet.env.parallel_env`).
        flat: Observations as one ``Box`` with the action mask appended (else the env's ``Dict``).
        numeric_infos: The same numeric ``infos`` keys every step (TorchRL builds its specs from them):
            ``occupied``, ``left``, ``arrived``, ``exit_reason`` (index into
            :data:`townlet.lifecycle.exits.REASONS`, -1 when nobody left), plus ``ticks``, ``must_decide``,
            ``discounted_reward`` in decision mode. Otherwise the env's infos, with ``episode``
            (``{"r", "l", "t"}``: the occupant's return, steps and seconds, as SB3 logs them) when a stay ends.
    """

    def __init__(self, env: TownletParallelEnv, flat: bool = True, numeric_infos: bool = False) -> None:
        self.env = env
        self.flat = flat
        self.numeric_infos = numeric_infos
        self.metadata = env.metadata
        self.render_mode = env.render_mode
        self.possible_agents = list(env.possible_agents)
        self.agents: list[str] = []
        n, size, actions = env.seats, env.core.obs_size, env.core.actions
        self.actions = actions
        self._space = flat_space(size, actions) if flat else env.observation_space(env.possible_agents[0])
        self._rows = np.zeros((n, size + actions), dtype=np.float32)
        self._returns = np.zeros(n, dtype=np.float64)
        self._lengths = np.zeros(n, dtype=np.int64)
        self._started = np.zeros(n, dtype=np.float64)

    @property
    def unwrapped(self) -> TownletParallelEnv:
        """The Townlet env underneath."""
        return self.env

    def observation_space(self, agent: str) -> spaces.Space:
        """The same space for every seat (flat ``Box``, or the env's ``Dict``)."""
        return self._space

    def action_space(self, agent: str) -> spaces.Discrete:
        """The env's action space."""
        return self.env.action_space(agent)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """Reset the env (see :meth:`TownletParallelEnv.reset`); every seat starts an episode."""
        obs, infos = self.env.reset(seed=seed, options=options)
        self.agents = list(self.env.agents)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._started[:] = time.perf_counter()
        if self.numeric_infos:
            infos = self._numeric(infos)
        return (self._flat_obs() if self.flat else obs), infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Step the env; a seat terminates when its occupant leaves or a newcomer takes it."""
        env = self.env
        if self.flat:
            rewards, _, truncations, infos = env.advance(actions)
            obs = self._flat_obs()
        else:
            obs, rewards, _, truncations, infos = env.step(actions)
        self.agents = list(env.agents)
        terminations = {seat: "exit_reason" in info or "arrived" in info for seat, info in infos.items()}
        self._episodes(rewards, terminations, truncations, infos)
        if self.numeric_infos:
            infos = self._numeric(infos)
        return obs, rewards, terminations, truncations, infos

    def _flat_obs(self) -> dict[str, np.ndarray]:
        rows = self._rows.copy()
        size = self.env.core.obs_size
        self.env.seat_rows(rows[:, :size], rows[:, size:])
        return dict(zip(self.possible_agents, rows, strict=True))

    def _episodes(self, rewards: dict, terminations: dict, truncations: dict, infos: dict) -> None:
        """Running returns per seat; ``infos[seat]["episode"]`` when an occupant's stay ends."""
        now = time.perf_counter()
        for i, seat in enumerate(self.possible_agents):
            info = infos[seat]
            ended = "exit_reason" in info or (truncations[seat] and info.get("person") is not None)
            if ended or info.get("person") is not None:
                self._returns[i] += rewards[seat]
                self._lengths[i] += 1
            if ended and not self.numeric_infos:
                info["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i]),
                                   "t": round(now - self._started[i], 6)}
            if terminations[seat] or truncations[seat]:
                self._returns[i], self._lengths[i], self._started[i] = 0.0, 0, now

    def _numeric(self, infos: dict[str, dict]) -> dict[str, dict]:
        out = {}
        for seat, info in infos.items():
            reason = info.get("exit_reason")
            row = {"occupied": info.get("person") is not None, "left": reason is not None,
                   "arrived": bool(info.get("arrived", False)), "exit_reason": REASONS.index(reason) if reason else -1}
            if self.env.core.points:
                row |= {"ticks": int(info.get("ticks", 0)), "must_decide": bool(info.get("must_decide", False)),
                        "discounted_reward": float(info.get("discounted_reward", 0.0))}
            out[seat] = row
        return out

    def render(self) -> Any:
        """The env's frame."""
        return self.env.render()

    def close(self) -> None:
        """Close the env."""
        self.env.close()

    def state(self) -> np.ndarray:
        """The env's global state."""
        return self.env.state()


class SeatRows(KeepsViews):
    """``BatchedTowns`` as rows of seats: the engine of :class:`TownsVectorEnv` and the SB3 ``TownsVecEnv``.

    Row ``t * S + s`` is seat ``s`` of town ``t`` (seat ``s`` is the town's slot ``s``). A row's episode is an
    occupant's stay: it ends (``terminated``) the step the occupant leaves, and the step a newcomer takes an
    empty seat (closing the empty spell, reward 0); every row is ``truncated`` when its town reaches the
    horizon, and that town starts its next episode in the same step (autoreset, seeds as ``BatchedTowns``):
    the returned observations are then the new episode's first and :attr:`final_obs` holds the last ones. An
    empty seat observes zeros and may only send the no-op, which is ignored.

    Args:
        n_towns: How many towns.
        seats: Seats per town (``population.agents`` when None, at most the capacity).
        **batch: The rest of :class:`~townlet.env.batched.BatchedTowns`'s arguments (``config``, ``variant``,
            ``agents``, ``overrides``, ``workers``, ``decisions``, ``gamma``).

    Attributes:
        obs: ``float32[N * S, D + A]`` flat observations (mask in the last ``A`` entries).
        final_obs: ``float32[N * S, D + A]``: for rows of towns reset in the last step, their last observation.
        rewards: ``float32[N * S]``; ``terminated`` / ``truncated``: ``bool[N * S]`` of the last step.
        scripted_fallbacks: Agent-steps driven by the scripted routine (agents beyond the seats), 0 normally.
        invalid_actions: Actions of occupied seats that their masks did not allow (the towns ignore them).
        exits: Occupants who left their seats.
    """

    def __init__(self, n_towns: int, seats: int | None = None, **batch: Any) -> None:
        self.batch = BatchedTowns(n_towns, autoreset=True, **batch)
        b = self.batch
        cap, size, actions = b.capacity, b.obs_size, b.actions
        n = b.loaded.config.population.agents if seats is None else int(seats)
        if not 1 <= n <= cap:
            raise ValueError(f"seats must lie in 1..{cap} (the town's capacity), not {n}")
        self.n_towns, self.seats, self.obs_size, self.actions = n_towns, n, size, actions
        self.num_rows = n_towns * n
        self.noop = int(Primitive.WAIT if b.loaded.config.env.action_level == "primitives" else Option.IDLE)
        self.single_observation_space = flat_space(size, actions)
        self.single_action_space = spaces.Discrete(actions)
        self._flat = np.zeros((n_towns, n, size + actions), dtype=np.float32)
        self.obs = self._flat.reshape(self.num_rows, size + actions)
        self._final = np.zeros_like(self._flat)
        self.final_obs = self._final.reshape(self.num_rows, size + actions)
        self.rewards = np.zeros(self.num_rows, dtype=np.float32)
        self.terminated = np.zeros(self.num_rows, dtype=bool)
        self.truncated = np.zeros(self.num_rows, dtype=bool)
        self._actions = np.full((n_towns, cap), -1, dtype=np.int64)
        self._returns = np.zeros(self.num_rows, dtype=np.float64)
        self._lengths = np.zeros(self.num_rows, dtype=np.int64)
        self._vacant = np.zeros(size + actions, dtype=np.float32)
        self._vacant[size + self.noop] = 1.0
        self.ended: list[tuple[int, float, int]] = []
        self.scripted_fallbacks = 0
        self.invalid_actions = 0
        self.exits = 0


    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every town (town ``t`` gets seed ``seed + t``; without a seed, one from fresh entropy)."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        self.batch.reset(seed=seed)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._write(self._flat, self.batch.obs, self.batch.masks, self.batch.alive)
        return self.obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step with ``int[N * S]`` actions; return ``(obs, rewards, terminated, truncated)`` (own buffers).

        :attr:`ended` then lists ``(row, return, steps)`` of each occupant's stay that the step ended.
        """
        b, n = self.batch, self.seats
        acts = self._actions
        seated = np.asarray(actions, dtype=np.int64).reshape(self.n_towns, n)
        np.copyto(acts[:, :n], np.where(b.alive[:, :n], seated, -1))
        if n < b.capacity and b.alive[:, n:].any():
            self.scripted_fallbacks += int(np.count_nonzero(b.alive[:, n:]))
        occupied = b.alive[:, :n].reshape(-1).copy()  # who sat in each seat during the step
        chosen = np.clip(seated.reshape(-1), 0, self.actions - 1)
        allowed = self.obs[np.arange(self.num_rows), self.obs_size + chosen] > 0.5
        self.invalid_actions += int(np.count_nonzero(occupied & ~(allowed & (seated.reshape(-1) >= 0))))
        b.step(acts)
        gone, came = b.terminated[:, :n], b.arrived[:, :n] & ~b.reset_towns[:, None]  # (a reset's new agents)
        rewards = np.where(occupied.reshape(self.n_towns, n), b.rewards[:, :n], 0.0)
        self.rewards[:] = rewards.reshape(-1)
        self.terminated[:] = (gone | came).reshape(-1)
        self.truncated[:] = np.repeat(b.reset_towns, n)
        if b.reset_towns.any():
            final = b.reset_towns
            rows = np.empty(self._final[final].shape, dtype=np.float32)
            masks = b.final_masks[final]
            self._write(rows, b.final_obs[final], masks, masks.any(axis=-1))  # (an empty slot's mask is all 0)
            self._final[final] = rows
        self._write(self._flat, b.obs, b.masks, b.alive)
        self._returns += self.rewards
        self._lengths += occupied
        self.exits += int(np.count_nonzero(gone))
        ends = occupied & (gone.reshape(-1) | self.truncated)
        self.ended = [(int(r), float(self._returns[r]), int(self._lengths[r])) for r in ends.nonzero()[0]]
        restart = self.terminated | self.truncated
        self._returns[restart] = 0.0
        self._lengths[restart] = 0
        return self.obs, self.rewards, self.terminated, self.truncated

    def _write(self, out: np.ndarray, obs: np.ndarray, masks: np.ndarray, alive: np.ndarray) -> None:
        n, size = self.seats, self.obs_size
        out[..., :size] = obs[:, :n]
        out[..., size:] = masks[:, :n]
        vacant = np.broadcast_to(~alive[:, :n], out.shape[:2])
        if vacant.any():
            out[vacant] = self._vacant

    def action_masks(self) -> np.ndarray:
        """``bool[N * S, A]`` the rows' current action masks."""
        return action_masks(self.obs, self.actions)

    def close(self) -> None:
        """Stop the batch's worker processes, if any."""
        self.batch.close()


class TownsVectorEnv(gymnasium.vector.VectorEnv):
    """Gymnasium ``VectorEnv`` over :class:`SeatRows` (one row per seat of every town; see there).

    Autoreset is Gymnasium's same-step mode: the step a town reaches its horizon returns its next episode's
    first observations, with the last ones in ``infos["final_obs"]`` (rows flagged in ``infos["_final_obs"]``).
    ``infos["episode"]`` gives the return ``r`` and length ``l`` of the stays that ended (``_episode`` flags
    them), ``infos["ticks"]`` the ticks each row's town advanced (decision mode: more than one).

    Args:
        n_towns: How many towns.
        seats: Seats per town (``population.agents`` when None).
        **batch: :class:`~townlet.env.batched.BatchedTowns`'s other arguments.
    """

    metadata = {"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, n_towns: int, seats: int | None = None, **batch: Any) -> None:
        self.rows = SeatRows(n_towns, seats, **batch)
        r = self.rows
        self.num_envs = r.num_rows
        self.single_observation_space = r.single_observation_space
        self.single_action_space = r.single_action_space
        self.observation_space = gymnasium.vector.utils.batch_space(r.single_observation_space, r.num_rows)
        self.action_space = gymnasium.vector.utils.batch_space(r.single_action_space, r.num_rows)
        self.render_mode = None

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Reset every town (a list of seeds: its first one seeds town 0, town ``t`` gets ``seed + t``)."""
        if isinstance(seed, list):
            seed = seed[0]
        return self.rows.reset(seed).copy(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Step every row; see the class docstring for ``infos``."""
        r = self.rows
        obs, rewards, terminated, truncated = r.step(actions)
        infos: dict[str, Any] = {"ticks": np.repeat(r.batch.ticks, r.seats)}
        if truncated.any():
            infos["final_obs"] = np.where(truncated[:, None], r.final_obs, 0.0).astype(np.float32)
            infos["_final_obs"] = truncated.copy()
        ended = r.ended
        if ended:
            episode_r, episode_l = np.zeros(r.num_rows), np.zeros(r.num_rows, dtype=np.int64)
            flags = np.zeros(r.num_rows, dtype=bool)
            for row, ret, length in ended:
                episode_r[row], episode_l[row], flags[row] = ret, length, True
            infos["episode"] = {"r": episode_r, "l": episode_l, "_r": flags, "_l": flags}
            infos["_episode"] = flags
        return obs.copy(), rewards.copy(), terminated.copy(), truncated.copy(), infos

    def action_masks(self) -> np.ndarray:
        """``bool[num_envs, A]`` the current action masks (sb3-contrib's and CleanRL-style loops' name)."""
        return self.rows.action_masks()

    def close_extras(self, **kwargs: Any) -> None:
        """Stop the batch's worker processes, if any."""
        if hasattr(self, "rows"):  # (not when the constructor failed)
            self.rows.close()


__all__ = ["SeatEpisodes", "SeatRows", "TownsVectorEnv", "action_masks", "flat_space", "require"]

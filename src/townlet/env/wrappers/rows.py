"""``BatchedTowns`` as rows of seats: :class:`SeatRows`, and :class:`TownsVectorEnv`, its Gymnasium face.

The per-row work of a step (actions in; rewards, stay boundaries, running returns and the flat observations
out) runs in two compiled loops over the towns' seats, so the rows cost next to nothing beside the towns.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium
import numba
import numpy as np
from gymnasium import spaces

from townlet.env.batched import BatchedTowns
from townlet.env.wrappers.flat import action_masks, flat_space
from townlet.policy.options import Option
from townlet.policy.primitives import Primitive
from townlet.sim.pickling import KeepsViews


class Stays(NamedTuple):
    """Each row's running return and length, and the stays the last step ended (``float64`` / ``int64[rows]``)."""

    returns: np.ndarray  # the current occupant's return so far
    lengths: np.ndarray  # ... and steps so far
    ends: np.ndarray  # bool: the last step ended this row's stay
    end_return: np.ndarray  # the ended stay's return
    end_length: np.ndarray  # ... and length


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
        self._occupied = np.zeros(self.num_rows, dtype=bool)  # who sat in each seat during the step
        rows = self.num_rows
        self._stays = Stays(
            returns=np.zeros(rows, dtype=np.float64),
            lengths=np.zeros(rows, dtype=np.int64),
            ends=np.zeros(rows, dtype=bool),
            end_return=np.zeros(rows, dtype=np.float64),
            end_length=np.zeros(rows, dtype=np.int64),
        )
        self.ended: list[tuple[int, float, int]] = []
        self.scripted_fallbacks = 0
        self.invalid_actions = 0
        self.exits = 0

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every town (town ``t`` gets seed ``seed + t``; without a seed, one from fresh entropy)."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        b = self.batch
        b.reset(seed=seed)
        self._stays.returns[:] = 0.0
        self._stays.lengths[:] = 0
        _write_rows(self._flat, b.obs, b.masks, b.alive, False, self.noop)
        return self.obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step with ``int[N * S]`` actions; return ``(obs, rewards, terminated, truncated)`` (own buffers).

        :attr:`ended` then lists ``(row, return, steps)`` of each occupant's stay that the step ended. An
        occupied seat's action of -1 hands it to the scripted routine for the step (counted in
        :attr:`scripted_fallbacks`), as does the town for agents beyond the seats.
        """
        b = self.batch
        chosen = np.asarray(actions, dtype=np.int64).reshape(-1)
        if chosen.shape != (self.num_rows,):
            raise ValueError(f"actions must have {self.num_rows} entries (towns x seats), got {chosen.shape}")
        invalid, fallbacks = _take_actions(chosen, b.alive, self.obs, self.obs_size, self._actions, self._occupied)
        self.invalid_actions += invalid
        self.scripted_fallbacks += fallbacks
        b.step(self._actions)
        if b.reset_towns.any():  # the last observations of towns that reached the horizon
            final = b.reset_towns
            rows = np.empty(self._final[final].shape, dtype=np.float32)
            _write_rows(rows, b.final_obs[final], b.final_masks[final], b.alive[final], True, self.noop)
            self._final[final] = rows
        self.exits += _settle_rows(
            self._occupied,
            b.rewards,
            b.terminated,
            b.arrived,
            b.reset_towns,
            self.rewards,
            self.terminated,
            self.truncated,
            tuple(self._stays),  # plain: faster calls
        )
        _write_rows(self._flat, b.obs, b.masks, b.alive, False, self.noop)
        stays = self._stays
        if stays.ends.any():
            rows_ended = stays.ends.nonzero()[0]
            self.ended = list(
                zip(
                    rows_ended.tolist(),
                    stays.end_return[rows_ended].tolist(),
                    stays.end_length[rows_ended].tolist(),
                    strict=True,
                )
            )
        elif self.ended:
            self.ended = []
        return self.obs, self.rewards, self.terminated, self.truncated

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


@numba.njit(cache=True)
def _take_actions(chosen, alive, flat, size, acts, occupied):
    """Seat actions into the towns' slot actions (-1 for empty seats and agents beyond the seats).

    Returns the occupied seats' actions their masks do not allow, and the agent-steps left to the script
    (an occupied seat's -1, an agent beyond the seats).
    """
    towns, seats = acts.shape[0], flat.shape[0] // acts.shape[0]
    n_actions = flat.shape[1] - size
    invalid = 0
    fallbacks = 0
    for t in range(towns):
        for s in range(seats):
            r = t * seats + s
            a = chosen[r]
            occupied[r] = alive[t, s]
            if not alive[t, s]:
                acts[t, s] = -1
                continue
            acts[t, s] = a
            if a < 0:
                fallbacks += 1
            elif a >= n_actions or flat[r, size + a] < 0.5:
                invalid += 1
        for s in range(seats, acts.shape[1]):
            acts[t, s] = -1
            if alive[t, s]:
                fallbacks += 1
    return invalid, fallbacks


@numba.njit(cache=True)
def _settle_rows(
    occupied: np.ndarray,
    town_rewards: np.ndarray,
    gone: np.ndarray,
    arrived: np.ndarray,
    reset: np.ndarray,
    rewards: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    stays_fields: tuple,
) -> int:
    """Rows' rewards and boundaries after the towns stepped; running returns; returns the exits.

    ``stays_fields`` is a :class:`Stays` as a plain tuple (it crosses from Python faster than a named one).
    """
    stays = Stays(*stays_fields)
    seats = rewards.shape[0] // gone.shape[0]
    returns, lengths, ends = stays.returns, stays.lengths, stays.ends
    exits = 0
    for t in range(gone.shape[0]):
        for s in range(seats):
            r = t * seats + s
            left = gone[t, s]
            came = arrived[t, s] and not reset[t]  # (a reset town's agents all "arrive": its new episode)
            rewards[r] = town_rewards[t, s] if occupied[r] else 0.0
            terminated[r] = left or came
            truncated[r] = reset[t]
            exits += left
            returns[r] += rewards[r]
            lengths[r] += occupied[r]
            ends[r] = occupied[r] and (left or reset[t])
            if ends[r]:
                stays.end_return[r] = returns[r]
                stays.end_length[r] = lengths[r]
            if terminated[r] or truncated[r]:
                returns[r] = 0.0
                lengths[r] = 0
    return exits


@numba.njit(cache=True)
def _write_rows(out, obs, masks, alive, alive_from_masks, noop):
    """Flat rows ``out[t, s] = obs | mask`` of every seat; an empty seat's: zeros with the no-op allowed.

    ``alive_from_masks``: tell empty seats by an all-zero mask (final observations, whose town has reset).
    """
    size = obs.shape[2]
    for t in range(out.shape[0]):
        for s in range(out.shape[1]):
            seated = alive[t, s]
            if alive_from_masks:
                seated = False
                for k in range(masks.shape[2]):
                    seated = seated or masks[t, s, k] != 0
            if seated:
                out[t, s, :size] = obs[t, s]
                for k in range(masks.shape[2]):
                    out[t, s, size + k] = masks[t, s, k]
            else:
                out[t, s, :] = 0.0
                out[t, s, size + noop] = 1.0

"""Stable-Baselines3 faces of the Townlet env: a ``VecEnv`` over ``BatchedTowns`` and MaskablePPO's masks.

- :class:`TownsVecEnv`: the rows of :class:`~townlet.env.wrappers.SeatRows` (every seat of every town) as an
  SB3 ``VecEnv``: ``dones`` at the end of each occupant's stay and at the horizon, autoreset with the last
  observation in ``infos[i]["terminal_observation"]`` (and ``TimeLimit.truncated``), ``infos[i]["episode"]``
  for SB3's episode statistics, and ``env_method("action_masks")`` for sb3-contrib's MaskablePPO.
- :class:`ActionMasks`: wraps any SB3 ``VecEnv`` of flat Townlet observations (SuperSuit's
  ``concat_vec_envs_v1(..., base_class="stable_baselines3")`` over :class:`~townlet.env.wrappers.SeatEpisodes`)
  so MaskablePPO finds ``action_masks()``: read from the mask carried in each observation.

Needs ``townlet[ecosystem]`` (stable-baselines3; sb3-contrib for MaskablePPO).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np

from townlet.env.wrappers import SeatRows, action_masks, require

_vec_env = require("stable_baselines3.common.vec_env", "townlet.env.wrappers.sb3")
# Base classes of an optional library, found at import time: typed Any (the ecosystem extra is not type-checked)
VecEnv: Any = _vec_env.VecEnv
VecEnvWrapper: Any = _vec_env.VecEnvWrapper

MASKS = "action_masks"


def _indices(n: int, indices: None | int | Sequence[int]) -> list[int]:
    if indices is None:
        return list(range(n))
    return [indices] if isinstance(indices, int) else list(indices)


class TownsVecEnv(VecEnv):
    """SB3 ``VecEnv`` over :class:`~townlet.env.wrappers.SeatRows` (one row per seat of every town).

    Args:
        n_towns: How many towns.
        seats: Seats per town (``population.agents`` when None).
        **batch: :class:`~townlet.env.batched.BatchedTowns`'s other arguments (``variant``, ``overrides``,
            ``workers``, ``decisions``, ``gamma``...).
    """

    def __init__(self, n_towns: int, seats: int | None = None, **batch: Any) -> None:
        self.rows = SeatRows(n_towns, seats, **batch)
        r = self.rows
        with warnings.catch_warnings():  # "render_mode is not defined": the rows do not render
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(r.num_rows, r.single_observation_space, r.single_action_space)
        self._pending: np.ndarray | None = None
        self._seed: int | None = None

    def reset(self) -> np.ndarray:
        """Reset every town (with the seed given to :meth:`seed`, else from fresh entropy)."""
        seed, self._seed = self._seed, None
        return self.rows.reset(seed).copy()

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        """Seed the next :meth:`reset`: town ``t`` gets ``seed + t``."""
        self._seed = seed
        return [None if seed is None else seed + t for t in range(self.rows.n_towns)]

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the actions (``int[num_envs]``) for :meth:`step_wait`."""
        if self._pending is not None:
            raise RuntimeError("step_async called twice without step_wait")
        self._pending = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """Step every row with the pending actions: ``(obs, rewards, dones, infos)``."""
        if self._pending is None:
            raise RuntimeError("step_wait called without step_async")
        actions, self._pending = self._pending, None
        r = self.rows
        obs, rewards, terminated, truncated = r.step(actions)
        infos: list[dict] = [{} for _ in range(r.num_rows)]
        for row in truncated.nonzero()[0].tolist():
            infos[row]["terminal_observation"] = r.final_obs[row].copy()
            infos[row]["TimeLimit.truncated"] = not terminated[row]
        for row, ret, length in r.ended:
            infos[row]["episode"] = {"r": ret, "l": length, "t": 0.0}
        return obs.copy(), rewards.copy(), terminated | truncated, infos

    def close(self) -> None:
        """Stop the batch's worker processes, if any."""
        self.rows.close()

    def get_attr(self, attr_name: str, indices: None | int | Sequence[int] = None) -> list[Any]:
        """An attribute of the rows' env (shared by all rows): ``render_mode``, ``seats``..."""
        value = None if attr_name == "render_mode" else getattr(self.rows, attr_name)
        return [value for _ in _indices(self.num_envs, indices)]

    def set_attr(self, attr_name: str, value: Any, indices: None | int | Sequence[int] = None) -> None:
        """Set an attribute of the rows (shared by all rows)."""
        setattr(self.rows, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: None | int | Sequence[int] = None, **method_kwargs: Any
    ) -> list[Any]:
        """``action_masks`` gives each row's mask (MaskablePPO); other names call the rows' method per row."""
        rows = _indices(self.num_envs, indices)
        if method_name == MASKS:
            masks = self.rows.action_masks()
            return [masks[i] for i in rows]
        result = getattr(self.rows, method_name)(*method_args, **method_kwargs)
        return [result for _ in rows]

    def has_attr(self, attr_name: str) -> bool:
        """Whether the rows have the attribute (``action_masks`` included)."""
        return hasattr(self.rows, attr_name)

    def env_is_wrapped(self, wrapper_class: type, indices: None | int | Sequence[int] = None) -> list[bool]:
        """No gymnasium wrappers inside."""
        return [False for _ in _indices(self.num_envs, indices)]

    def action_masks(self) -> np.ndarray:
        """``bool[num_envs, A]`` the rows' current masks."""
        return self.rows.action_masks()


class ActionMasks(VecEnvWrapper):
    """Gives an SB3 ``VecEnv`` of flat Townlet observations MaskablePPO's ``action_masks()``.

    Args:
        venv: The vector env (e.g. SuperSuit's concat of :class:`~townlet.env.wrappers.SeatEpisodes`).
        actions: ``A``, the size of the action space (the observations' last ``A`` entries are the mask);
            read from ``venv.action_space`` when None.
    """

    def __init__(self, venv: Any, actions: int | None = None) -> None:
        super().__init__(venv)
        self.n_actions = int(actions if actions is not None else venv.action_space.n)
        self._last: np.ndarray | None = None
        self._seed: int | None = None

    def seed(self, seed: int | None = None) -> Sequence[None | int]:
        """Seed the next :meth:`reset` (SuperSuit's vector envs have no ``seed()``, so SB3's ``seed=`` failed)."""
        self._seed = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def reset(self) -> np.ndarray:
        """Reset (with the seed given to :meth:`seed`) and remember the observations."""
        seed, self._seed = self._seed, None
        inner = getattr(self.venv, "venv", None)
        if seed is not None and isinstance(inner, gymnasium.vector.VectorEnv):  # SuperSuit's SB3 face
            self._last, self.venv.reset_infos = inner.reset(seed=seed)
        else:
            self._last = self.venv.reset()
        return self._last

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """Step and remember the observations (after an autoreset: the new episode's first)."""
        obs, rewards, dones, infos = self.venv.step_wait()
        self._last = obs
        return obs, rewards, dones, infos

    def action_masks(self) -> np.ndarray:
        """``bool[num_envs, A]`` the masks of the last observations."""
        if self._last is None:
            raise RuntimeError("no observation yet: reset() first")
        return action_masks(self._last, self.n_actions)

    def env_method(
        self, method_name: str, *method_args: Any, indices: None | int | Sequence[int] = None, **method_kwargs: Any
    ) -> list[Any]:
        """``action_masks`` per row from the last observations; anything else goes to the wrapped env."""
        if method_name == MASKS:
            masks = self.action_masks()
            return [masks[i] for i in _indices(self.num_envs, indices)]
        return self.venv.env_method(method_name, *method_args, indices=indices, **method_kwargs)

    def has_attr(self, attr_name: str) -> bool:
        """``action_masks`` is always there."""
        return attr_name == MASKS or self.venv.has_attr(attr_name)


__all__ = ["ActionMasks", "TownsVecEnv"]

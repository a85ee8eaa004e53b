"""``SeatEpisodes``: the env with each occupant's stay as its seat's episode, for vector envs (SuperSuit, TorchRL)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from townlet.env.parallel import TownletParallelEnv
from townlet.env.wrappers.flat import flat_space
from townlet.lifecycle.exits import REASONS
from townlet.sim.pickling import KeepsViews


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
                info["episode"] = {
                    "r": float(self._returns[i]),
                    "l": int(self._lengths[i]),
                    "t": round(now - self._started[i], 6),
                }
            if terminations[seat] or truncations[seat]:
                self._returns[i], self._lengths[i], self._started[i] = 0.0, 0, now

    def _numeric(self, infos: dict[str, dict]) -> dict[str, dict]:
        out = {}
        for seat, info in infos.items():
            reason = info.get("exit_reason")
            row: dict[str, float] = {
                "occupied": info.get("person") is not None,
                "left": reason is not None,
                "arrived": bool(info.get("arrived", False)),
                "exit_reason": REASONS.index(reason) if reason else -1,
            }
            if self.env.core.points:
                row |= {
                    "ticks": int(info.get("ticks", 0)),
                    "must_decide": bool(info.get("must_decide", False)),
                    "discounted_reward": float(info.get("discounted_reward", 0.0)),
                }
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

"""RLlib (new API stack) face of the Townlet env: a ``MultiAgentEnv`` with seats as agent ids.

Observations are ``Dict(observations=Box(D), action_mask=Box(A))``, the layout RLlib's action-masking
module (``ray.rllib.examples.rl_modules.classes.action_masking_rlm.ActionMaskingTorchRLModule``) reads.

RLlib, like PettingZoo, never lets an agent id come back within an episode once it is done, so an
occupant's stay cannot end inside an RLlib episode while its seat goes on. Instead an RLlib episode is *cut*
at every exit: the leaver's seat is ``terminated`` (with its terminal reward), every other seated agent is
``truncated`` with its current observation (RLlib bootstraps its value from it, so nothing is lost), and the
next ``reset()`` (without a seed) carries on in the same town as a new RLlib episode. Empty seats are absent
from the observations (RLlib's convention for agents that are not acting); a newcomer appears, with its
first observation, the step it takes a seat. A town that reaches its horizon (or ``max_cycles``) ends the
episode for everybody, and the next ``reset()`` builds a fresh town. RLlib's episode statistics are
therefore per segment between exits.

Needs ``townlet[ecosystem]`` (``ray[rllib]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from townlet.env.wrappers import require

# The base class of an optional library, found at import time: typed Any (the ecosystem extra is not type-checked)
MultiAgentEnv: Any = require("ray.rllib.env.multi_agent_env", "townlet.env.wrappers.rllib").MultiAgentEnv


class TownletMultiAgentEnv(MultiAgentEnv):
    """The Townlet env for RLlib; see the module docstring for how stays map onto RLlib episodes.

    Args:
        config: Keyword arguments of :func:`townlet.env.parallel_env` (RLlib passes ``env_config`` here),
            e.g. ``{"variant": "compact", "overrides": {"features.lifecycle": "on"}}``.

    Attributes:
        env: The Townlet env underneath (its ``counters()`` say whether every agent was driven by RLlib).
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        from townlet.env import parallel_env

        self.env = parallel_env(**dict(config or {}))
        env = self.env
        self.possible_agents = list(env.possible_agents)
        self.agents: list[str] = []
        size, actions = env.core.obs_size, env.core.actions
        space = spaces.Dict(
            {
                "action_mask": spaces.Box(0.0, 1.0, shape=(actions,), dtype=np.float32),
                "observations": spaces.Box(-1.0, 1.0, shape=(size,), dtype=np.float32),
            }
        )
        self.observation_spaces = dict.fromkeys(self.possible_agents, space)
        self.action_spaces = dict.fromkeys(self.possible_agents, env.action_space(self.possible_agents[0]))
        self._obs = np.zeros((env.seats, size), dtype=np.float32)
        self._masks = np.zeros((env.seats, actions), dtype=np.float32)
        self._cut = False  # the last episode was cut at an exit: the next reset() carries on in the town

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        """A new RLlib episode: a fresh town (first time, after the horizon, or with a seed), else the same town."""
        if seed is not None or not self._cut or not self.env.agents:
            self.env.reset(seed=seed, options=options)
        self._cut = False
        self.agents = [s for s in self.possible_agents if self.env.person(s) is not None]
        obs = self._observations(self.agents)
        return obs, {seat: {"person": self.env.person(seat)} for seat in self.agents}

    def step(self, action_dict: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Step the town; an exit cuts the episode (see the module docstring)."""
        env = self.env
        acting = list(self.agents)  # the seats that observed last step (RLlib sends their actions)
        rewards, _, truncations, infos = env.advance(action_dict)
        over = bool(truncations[self.possible_agents[0]])
        left = [s for s in acting if "exit_reason" in infos[s]]
        present = [s for s in self.possible_agents if infos[s].get("person") is not None or s in left]
        obs = self._observations(present)
        terminateds = {s: True for s in left}
        truncateds: dict[str, bool] = {}
        if over or left:
            truncateds = {s: True for s in present if s not in terminateds}
            self._cut = not over
            self.agents = []
        else:
            self.agents = present
        terminateds["__all__"] = False
        truncateds["__all__"] = over or bool(left)
        out_rewards = {s: rewards[s] for s in acting}
        return obs, out_rewards, terminateds, truncateds, {s: infos[s] for s in present}

    def _observations(self, seats: list[str]) -> dict[str, dict[str, np.ndarray]]:
        self.env.seat_rows(self._obs, self._masks)
        index = {s: i for i, s in enumerate(self.possible_agents)}
        return {
            s: {"observations": self._obs[index[s]].copy(), "action_mask": self._masks[index[s]].copy()} for s in seats
        }

    def render(self) -> Any:
        """The town's frame (as the env's ``render_mode`` says)."""
        return self.env.render()


__all__ = ["TownletMultiAgentEnv"]

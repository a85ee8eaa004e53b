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

from townlet.env.wrappers.flat import ECOSYSTEM_EXTRA, action_masks, flat_space, require
from townlet.env.wrappers.rows import SeatRows, TownsVectorEnv
from townlet.env.wrappers.seats import SeatEpisodes

__all__ = ["ECOSYSTEM_EXTRA", "SeatEpisodes", "SeatRows", "TownsVectorEnv", "action_masks", "flat_space", "require"]

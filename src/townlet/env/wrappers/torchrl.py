"""TorchRL face of the Townlet env: :func:`torchrl_env`, TorchRL's ``PettingZooWrapper`` over seat episodes.

One group (``"seat"``) of every seat. Each seat's ``terminated`` marks the end of an occupant's stay (and
of an empty spell), the way :class:`~townlet.env.wrappers.SeatEpisodes` sets it, so TorchRL's per-agent
value targets stop there; the env as a whole is done only at the horizon (``done_on_any=False``). The
``action_mask`` of every seat is TorchRL's ``("seat", "action_mask")``; ``("seat", "info")`` holds the
numeric infos (``occupied``, ``left``, ``arrived``, ``exit_reason``; decision mode adds ``ticks``,
``must_decide`` and ``discounted_reward``).

Needs ``townlet[ecosystem]`` (torchrl).
"""

from __future__ import annotations

from typing import Any

from townlet.env.wrappers import SeatEpisodes, require

GROUP = "seat"


def torchrl_env(seed: int | None = None, device: str = "cpu", **env_kwargs: Any) -> Any:
    """A TorchRL env over :func:`townlet.env.parallel_env` (``env_kwargs``), seats grouped as ``"seat"``."""
    from townlet.env import parallel_env

    wrapper = require("torchrl.envs", "townlet.env.wrappers.torchrl").PettingZooWrapper
    env = SeatEpisodes(parallel_env(**env_kwargs), flat=False, numeric_infos=True)
    return wrapper(
        env,
        group_map={GROUP: list(env.possible_agents)},
        use_mask=False,
        done_on_any=False,
        categorical_actions=True,
        seed=seed,
        device=device,
    )


__all__ = ["GROUP", "torchrl_env"]

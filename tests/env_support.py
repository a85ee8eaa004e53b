"""Shared settings of the env tests: a churning lifecycle, a short horizon, a random masked actor."""

from __future__ import annotations

import numpy as np

# Agents retire after ~80 ticks, so a few hundred steps see several leave and newcomers arrive.
LIFECYCLE = {
    "features.lifecycle": "on",
    "lifecycle.exits.age_out": True,
    "lifecycle.age_out_days": 0.08,
    "lifecycle.max_exits_per_day": 50,
    "lifecycle.exit_spacing": 3,
}
SHORT = {"env.horizon": 300}
# The town the adapter and library tests churn: the lifecycle above with perturbations on.
CHURN = {**LIFECYCLE, "features.perturbations": "on"}


def masked_actions(env, obs: dict, rng: np.random.Generator) -> dict:
    """A uniformly random allowed action for every agent."""
    return {a: int(rng.choice(np.flatnonzero(obs[a]["action_mask"]))) for a in env.agents}


def churn(horizon: int) -> dict:
    """The churning town's overrides with an episode of ``horizon`` ticks."""
    return {**CHURN, "env.horizon": horizon}


def churn_args(horizon: int) -> list[str]:
    """The same as ``--set KEY=VALUE`` command-line arguments."""
    return [
        arg
        for key, value in churn(horizon).items()
        for arg in ("--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    ]

"""A town where agents come and go every few dozen ticks, for the env, adapter and library tests."""

from __future__ import annotations

# Lifecycle and perturbations on, and agents retire after ~80 ticks: exits and newcomers every few dozen ticks.
CHURN = {
    "features.lifecycle": "on",
    "features.perturbations": "on",
    "lifecycle.exits.age_out": True,
    "lifecycle.age_out_days": 0.08,
    "lifecycle.max_exits_per_day": 50,
    "lifecycle.exit_spacing": 3,
}


def churn(horizon: int) -> dict:
    """The churning town's overrides with an episode of ``horizon`` ticks."""
    return {**CHURN, "env.horizon": horizon}


def churn_args(horizon: int) -> list[str]:
    """The same as ``--set KEY=VALUE`` command-line arguments."""
    return [arg for key, value in churn(horizon).items()
            for arg in ("--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}")]

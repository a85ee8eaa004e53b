"""The flat observation the adapters share (the action mask appended), and the ``ecosystem`` extra's import check."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

ECOSYSTEM_EXTRA = "ecosystem"


def require(module: str, what: str) -> Any:
    """Import ``module`` or stop with one line naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs {module.split('.')[0]} (pip install 'townlet[{ECOSYSTEM_EXTRA}]'): {exc}"
        ) from None


def flat_space(obs_size: int, actions: int) -> spaces.Box:
    """The flat observation: ``float32[D + A]`` in [-1, 1], the action mask (0/1) in the last ``A`` entries."""
    return spaces.Box(-1.0, 1.0, shape=(obs_size + actions,), dtype=np.float32)


def action_masks(flat_obs: np.ndarray, actions: int) -> np.ndarray:
    """``bool[..., A]``: the action masks carried in the last ``actions`` entries of flat observations."""
    return flat_obs[..., -actions:] > 0.5

"""The commitment window: the one rule of how long an agent keeps its running option before it may choose again.

An option started at tick ``started`` holds for ``options.commitment_window`` ticks. Every reader asks this
module: the option mask (:func:`~townlet.policy.options.mask_slots`), the observation's
``option.commitment_left`` (:func:`~townlet.observations.common._write_common`), the option controller
(:meth:`~townlet.policy.controller.OptionController.may_switch`) and the simulation's interrupts. (What may
break the window early, a need turning critical, is the mask's rule.) It lives in the observations layer, the
lowest that every reader may import (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np


@numba.njit(cache=True)
def commitment_left(tick: Any, started: Any, window: Any) -> Any:
    """Ticks until an option started at ``started`` may be left, at ``tick`` (0: now; works elementwise too)."""
    return np.maximum(window - (tick - started), 0)


@numba.njit(cache=True)
def window_over(tick: Any, started: Any, window: Any) -> Any:
    """Whether an option started at ``started`` may be left at ``tick`` (:func:`commitment_left` is 0).

    Compiled for the kernels; ``window_over.py_func`` is the same rule elementwise over NumPy arrays.
    """
    return commitment_left(tick, started, window) == 0

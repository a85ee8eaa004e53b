"""The three seeded random streams (world, events, policy) and their capturable state."""

from __future__ import annotations

from typing import Any

import numpy as np

STREAMS = ("world", "events", "policy")


class RngStreams:
    """Three independent generators derived from one run seed; their state is snapshot-able.

    Attributes:
        world: Tie-break jitter, chat outcomes and other rules of the world.
        events: Weather, utility faults and (later) perturbations.
        policy: Policy sampling.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        children = np.random.SeedSequence(self.seed).spawn(len(STREAMS))
        self.world, self.events, self.policy = (np.random.Generator(np.random.PCG64(c)) for c in children)

    def state(self) -> dict[str, Any]:
        """Return the bit-generator state of every stream (JSON-compatible)."""
        return {name: getattr(self, name).bit_generator.state for name in STREAMS}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore states captured by :meth:`state`."""
        for name in STREAMS:
            getattr(self, name).bit_generator.state = state[name]

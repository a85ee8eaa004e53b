"""Possession: an admin drives an agent with console orders instead of the policy.

:class:`PossessionPolicy` wraps the simulation's policy. For agents nobody possesses it asks the wrapped
policy; a possessed agent carries out the option it was last ordered (``act``), keeps it when the policy
would have reconsidered, and idles when it has no order. Possession is keyed by agent id, so it ends by
itself when the agent leaves the town.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from townlet.policy.options import Option

if TYPE_CHECKING:
    from townlet.world.state import World


class PossessionPolicy:
    """The simulation's policy with per-agent console overrides.

    Args:
        inner: The policy that drives everyone not possessed.
        world: The town (to map agent ids to slots).

    Attributes:
        owners: Agent id -> principal possessing it.
    """

    def __init__(self, inner: Any, world: World) -> None:
        self.inner = inner
        self.world = world
        self.owners: dict[str, str] = {}

    def choose(self, world: World, slot: int, mask: np.ndarray) -> int:
        """The wrapped policy's choice, or for a possessed agent its current option (else Idle)."""
        name = world.agents.ids[slot]
        if not self.owners or name not in self.owners:
            return self.inner.choose(world, slot, mask)
        current = int(world.agents.option[slot])
        return current if current >= 0 else int(Option.IDLE)

    @property
    def possessed_by(self) -> dict[int, str]:
        """Slot -> principal for every possessed agent still in town (telemetry shows it)."""
        if not self.owners:
            return {}
        slot_of = self.world.agents.slot_of
        return {slot_of[name]: who for name, who in self.owners.items() if name in slot_of}

    def prune(self) -> None:
        """Forget possessions of agents that have left."""
        slot_of = self.world.agents.slot_of
        for name in [n for n in self.owners if n not in slot_of]:
            del self.owners[name]

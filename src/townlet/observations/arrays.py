"""Named bundles of the town's agent and object arrays that compiled kernels read (``AgentArrays``, ``ObjectArrays``).

A bundle holds references to the world's own arrays (no copies), so one built once stays current while the
arrays live; a snapshot restore copies into them. Kernels take a bundle instead of a list of positional arrays
and read its fields by name (docs/architecture.md, "Kernels take named bundles"). The observation blocks and
the option mask share these two; what only one kernel reads travels in that kernel's own bundle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from townlet.world.agents import AgentTable
    from townlet.world.objects import ObjectTable


class AgentArrays(NamedTuple):
    """The agent table's arrays the kernels read, each indexed by slot (see ``world/agents.py``)."""

    alive: np.ndarray  # bool: the slot holds a living agent
    needs: np.ndarray  # float32[C, 4] deficits
    wallet: np.ndarray  # float64 money
    inventory: np.ndarray  # int32[C, items]
    job: np.ndarray  # int32 job position, -1 none
    home: np.ndarray  # int32 home place
    tile: np.ndarray  # int32 flat position
    personality: np.ndarray  # float32[C, traits]
    option: np.ndarray  # int8 running option, -1 none
    option_started: np.ndarray  # int64 the tick it started
    activity: np.ndarray  # int8 what the body is doing
    target_obj: np.ndarray  # int32 the object of the current step, -1 none
    dest_field: np.ndarray  # int32 the distance field walked toward, -1 none
    last_action: np.ndarray  # int16 the last primitive's affordance, -1 none
    last_success: np.ndarray  # bool ... whether it succeeded
    last_duration: np.ndarray  # int32 ... and how long it took


def agent_arrays(agents: AgentTable) -> AgentArrays:
    """The bundle of ``agents``'s arrays (cheap: references only)."""
    a = agents
    return AgentArrays(
        alive=a.alive,
        needs=a.needs,
        wallet=a.wallet,
        inventory=a.inventory,
        job=a.job,
        home=a.home,
        tile=a.tile,
        personality=a.personality,
        option=a.option,
        option_started=a.option_started,
        activity=a.activity,
        target_obj=a.target_obj,
        dest_field=a.dest_field,
        last_action=a.last_action,
        last_success=a.last_success,
        last_duration=a.last_duration,
    )


class ObjectArrays(NamedTuple):
    """The object table's arrays the kernels read, each indexed by object (see ``world/objects.py``)."""

    reserved_by: np.ndarray  # int32 the slot that reserved it, -1 none
    user: np.ndarray  # int32 the slot using it, -1 none
    x: np.ndarray  # tile column
    y: np.ndarray  # tile row


def object_arrays(objects: ObjectTable) -> ObjectArrays:
    """The bundle of ``objects``'s arrays (cheap: references only)."""
    return ObjectArrays(reserved_by=objects.reserved_by, user=objects.user, x=objects.x, y=objects.y)

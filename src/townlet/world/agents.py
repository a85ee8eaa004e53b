"""Agents as struct-of-arrays: one row per slot, an ``alive`` mask, and the id <-> slot map.

Every per-agent quantity lives in a NumPy array indexed by slot so per-tick rules vectorise over
the population; Python objects appear only in the id map.
"""

from __future__ import annotations

import numpy as np

from townlet.config.models import NEED_NAMES
from townlet.config.vocabulary import TRAITS

PERSONALITY_TRAITS = TRAITS  # the vocabulary's trait names, by the world's older spelling


class Activity:
    """What an agent's body is doing this tick (int8 codes in ``AgentTable.activity``)."""

    IDLE = 0  # no step in progress: its controller must decide
    MOVING = 1  # walking toward the current step's object
    QUEUED = 2  # in an object's queue (walking to or standing on a queue node)
    USING = 3  # running an affordance
    WAITING = 4  # deliberately waiting until ``wait_until``


class AgentTable:
    """Fixed-capacity arrays of agent state.

    Attributes:
        capacity: Number of slots.
        alive: ``bool[C]`` which slots hold a living agent.
        needs: ``float32[C, 4]`` deficits in [0, 1] (hunger, hygiene, energy, social).
        tile: ``int32[C]`` flat position.
        wallet: ``float64[C]`` money in meal units.
        inventory: ``int32[C, I]`` item counts, columns named by ``items``.
        home: ``int32[C]`` place index of the agent's home.
        job: ``int32[C]`` job position index, -1 if unemployed.
        personality: ``float32[C, 5]`` traits in [-1, 1].
    """

    def __init__(self, capacity: int, items: tuple[str, ...]) -> None:
        c = capacity
        self.capacity = c
        self.items = items
        self.item_index = {name: i for i, name in enumerate(items)}
        self.ids: list[str | None] = [None] * c
        self.slot_of: dict[str, int] = {}
        self.alive = np.zeros(c, dtype=bool)
        self.needs = np.zeros((c, len(NEED_NAMES)), dtype=np.float32)
        self.tile = np.zeros(c, dtype=np.int32)
        self.wallet = np.zeros(c, dtype=np.float64)
        self.inventory = np.zeros((c, len(items)), dtype=np.int32)
        self.home = np.full(c, -1, dtype=np.int32)
        self.job = np.full(c, -1, dtype=np.int32)
        self.personality = np.zeros((c, len(PERSONALITY_TRAITS)), dtype=np.float32)
        self.spawn_tick = np.zeros(c, dtype=np.int64)
        # option layer
        self.option = np.full(c, -1, dtype=np.int8)
        self.option_started = np.zeros(c, dtype=np.int64)
        self.plan_step = np.zeros(c, dtype=np.int8)
        # body layer
        self.activity = np.zeros(c, dtype=np.int8)
        self.target_obj = np.full(c, -1, dtype=np.int32)
        self.target_aff = np.full(c, -1, dtype=np.int32)
        self.dest_field = np.full(c, -1, dtype=np.int32)
        self.requested = np.zeros(c, dtype=bool)
        self.step_started = np.zeros(c, dtype=np.int64)
        self.wait_until = np.zeros(c, dtype=np.int64)
        self.aff_elapsed = np.zeros(c, dtype=np.int32)
        self.aff_duration = np.zeros(c, dtype=np.int32)
        self.blocked = np.zeros(c, dtype=np.int32)
        self.asleep = np.zeros(c, dtype=bool)
        self.step_done = np.zeros(c, dtype=bool)
        self.step_failed = np.zeros(c, dtype=bool)
        self.last_progress = np.zeros(c, dtype=np.int64)
        # what the last primitive did (observations read these)
        self.last_action = np.full(c, -1, dtype=np.int16)
        self.last_success = np.zeros(c, dtype=bool)
        self.last_duration = np.zeros(c, dtype=np.int32)
        self.collapse_ticks = np.zeros(c, dtype=np.int32)
        self.fail_reason: list[str] = [""] * c

    def free_slot(self) -> int:
        """Lowest unused slot, or -1 when the table is full."""
        free = (~self.alive).nonzero()[0]
        return int(free[0]) if len(free) else -1

    def add(self, agent_id: str, slot: int, tile: int, tick: int) -> None:
        """Occupy ``slot`` with a fresh agent (arrays are reset; callers fill needs, wallet, home...)."""
        if agent_id in self.slot_of:
            raise ValueError(f"agent id {agent_id!r} already exists")
        if self.alive[slot]:
            raise ValueError(f"slot {slot} is occupied")
        self.ids[slot] = agent_id
        self.slot_of[agent_id] = slot
        self.alive[slot] = True
        self.tile[slot] = tile
        self.spawn_tick[slot] = tick
        self.last_progress[slot] = tick
        self.needs[slot] = 0.0
        self.wallet[slot] = 0.0
        self.inventory[slot] = 0
        self.job[slot] = -1
        self.clear_step(slot)
        self.option[slot] = -1
        self.plan_step[slot] = 0
        self.asleep[slot] = False
        self.collapse_ticks[slot] = 0
        self.last_action[slot] = -1

    def remove(self, slot: int) -> None:
        """Free a slot (the agent has left the town)."""
        agent_id = self.ids[slot]
        if agent_id is not None:
            self.slot_of.pop(agent_id, None)
        self.ids[slot] = None
        self.alive[slot] = False
        self.clear_step(slot)
        self.option[slot] = -1
        self.asleep[slot] = False

    def clear_step(self, slot: int) -> None:
        """Forget the body's current step (callers release reservations first)."""
        self.activity[slot] = Activity.IDLE
        self.target_obj[slot] = -1
        self.target_aff[slot] = -1
        self.dest_field[slot] = -1
        self.requested[slot] = False
        self.aff_elapsed[slot] = 0
        self.aff_duration[slot] = 0
        self.blocked[slot] = 0
        self.step_done[slot] = False
        self.step_failed[slot] = False

    def slots(self) -> np.ndarray:
        """Slots of living agents, ascending."""
        return self.alive.nonzero()[0]

    def name(self, slot: int) -> str:
        """The id of the agent in ``slot`` (``"?"`` for an empty slot)."""
        return self.ids[slot] or "?"

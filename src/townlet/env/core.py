"""``TownCore``: one town stepped with slot-indexed arrays (the engine under the single and the batched env).

Everything here is an array over slots: actions in, then observations, action masks, rewards, and the
per-slot flags of what happened this step (an agent left, an agent arrived, the episode hit its horizon).
The PettingZoo env turns those into per-agent dicts; the batched interface stacks them across towns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from townlet.config.loader import LoadedConfig
from townlet.observations import ObservationEncoder
from townlet.policy.options import OPTION_COUNT, mask_arrays, mask_row, mask_scalars, town_terms
from townlet.policy.primitives import primitive_count
from townlet.sim.simulation import Simulation
from townlet.world.events import Event, EventKind

NEVER = np.iinfo(np.int64).max


@dataclass
class TownBuffers:
    """Slot-indexed output arrays of one town (views into a batch, or its own).

    Attributes:
        obs: ``float32[C, D]`` observations (zero rows for empty slots).
        mask: ``int8[C, A]`` action masks (zero rows for empty slots).
        reward: ``float32[C]`` reward of the tick just simulated (including an exit's terminal penalty).
        alive: ``bool[C]`` slots holding an agent after the step.
        exited: ``bool[C]`` slots whose agent left this step (terminated).
        arrived: ``bool[C]`` slots whose agent arrived this step (its first observation).
        truncated: ``bool[C]`` slots whose agent reached the horizon this step.
    """

    obs: np.ndarray
    mask: np.ndarray
    reward: np.ndarray
    alive: np.ndarray
    exited: np.ndarray
    arrived: np.ndarray
    truncated: np.ndarray

    @classmethod
    def allocate(cls, capacity: int, obs_size: int, actions: int) -> TownBuffers:
        """Fresh zeroed buffers for one town."""
        return cls(
            obs=np.zeros((capacity, obs_size), dtype=np.float32),
            mask=np.zeros((capacity, actions), dtype=np.int8),
            reward=np.zeros(capacity, dtype=np.float32),
            alive=np.zeros(capacity, dtype=bool),
            exited=np.zeros(capacity, dtype=bool),
            arrived=np.zeros(capacity, dtype=bool),
            truncated=np.zeros(capacity, dtype=bool),
        )


def action_count(loaded: LoadedConfig, sim: Simulation) -> int:
    """Size of the Discrete action space: 7 options, or 5 + affordances primitives."""
    if loaded.config.env.action_level == "primitives":
        return primitive_count(sim.world)
    return OPTION_COUNT


class TownCore:
    """One town for RL: reset with a seed, step with an ``int[C]`` action array, read slot-indexed buffers.

    Args:
        loaded: The config (its ``features.observations`` is the variant).
        buffers: Where to write; allocated when None.

    Attributes:
        sim: The current episode's simulation.
        encoder: Its observation encoder.
        ticks: Steps taken in this episode.
        done: The horizon was reached (call :meth:`reset`).
        exits: Slot -> (agent id, reason) for the agents that left in the last step.
        names: Agent id per slot as of the last step.
    """

    def __init__(self, loaded: LoadedConfig, buffers: TownBuffers | None = None) -> None:
        self.loaded = loaded
        self.horizon = loaded.config.env.horizon
        self.primitives = loaded.config.env.action_level == "primitives"
        self.sim = Simulation(loaded, seed=loaded.config.seed)
        self.actions = action_count(loaded, self.sim)
        cap = self.sim.world.agents.capacity
        self.capacity = cap
        probe = ObservationEncoder(self.sim.world)
        self.obs_size = probe.size
        self.layout = probe.layout
        self.buffers = buffers or TownBuffers.allocate(cap, self.obs_size, self.actions)
        self.encoder = probe
        self.ticks = 0
        self.done = False
        self.exits: dict[int, tuple[str, str]] = {}
        self.names: list[str | None] = [None] * cap
        self._spawn = np.zeros(cap, dtype=np.int64)
        self._population = b""
        self._flagged = False
        self.commitment = loaded.config.options.commitment_window
        self.critical = np.float32(loaded.config.needs.critical)
        self._critical_since = np.full(cap, NEVER, dtype=np.int64)  # first tick of each agent's critical streak
        self._mask_args: tuple[Any, Any, tuple[Any, ...]] = (None, None, ())  # (sim, buffers, arguments) in use

    def reset(self, seed: int) -> None:
        """Start a new episode: a fresh town seeded with ``seed``; every agent's first observation is written."""
        b = self.buffers
        self.sim = Simulation(self.loaded, seed=seed)
        self.sim.time_phases = False  # nobody reads per-phase times here; a dozen clock reads per tick saved
        b.obs[...] = 0.0
        self.encoder = ObservationEncoder(self.sim.world, out=b.obs)
        self.ticks = 0
        self.done = False
        self.exits = {}
        a = self.sim.world.agents
        b.alive[:] = a.alive
        b.arrived[:] = a.alive
        b.exited[:] = False
        b.truncated[:] = False
        b.reward[:] = 0.0
        self._spawn[:] = a.spawn_tick
        self._critical_since[:] = NEVER
        self._population = a.alive.tobytes() + a.spawn_tick.tobytes()
        self._flagged = True
        self.names = list(a.ids)
        self._observe()

    def step(self, actions: np.ndarray, observe: bool = True) -> None:
        """Advance one tick with ``actions`` (``int[C]``; -1 leaves a slot to the built-in policy).

        ``observe=False`` leaves the observations and masks to the caller (a batch's
        :class:`~townlet.env.stacked.StackedObserver` writes them for all its towns at once).
        """
        b, sim = self.buffers, self.sim
        result = sim.step(actions)
        self.ticks += 1
        a = sim.world.agents
        alive = a.alive
        b.reward[:] = sim.rewards.last
        population = alive.tobytes() + a.spawn_tick.tobytes()
        if population != self._population:  # somebody left or arrived (a slot's occupant is new)
            self._population = population
            changed = a.spawn_tick != self._spawn
            np.logical_and(b.alive, ~alive | changed, out=b.exited)
            np.logical_and(alive, ~b.alive | changed, out=b.arrived)
            b.alive[:] = alive
            self._spawn[:] = a.spawn_tick
            self._critical_since[b.arrived] = NEVER
            self._lifecycle(result.events)
            self._flagged = True
        elif self._flagged:  # clear last step's exits and arrivals
            b.exited[:] = False
            b.arrived[:] = False
            self.exits = {}
            self._flagged = False
        self.done = self.ticks >= self.horizon
        if self.done:
            b.truncated[:] = alive
        elif np.count_nonzero(b.truncated):  # (a batch may restore the flags after an autoreset)
            b.truncated[:] = False
        if observe:
            self._observe()

    @property
    def changed(self) -> bool:
        """Whether the last step (or the reset) saw agents leave or arrive (``exited`` / ``arrived`` set)."""
        return self._flagged

    def _lifecycle(self, events: list[Event]) -> None:
        b = self.buffers
        reasons = {e.agent: e.detail for e in events if e.kind is EventKind.AGENT_EXIT}
        self.exits = {int(s): (str(self.names[s]), reasons.get(int(s), "left")) for s in b.exited.nonzero()[0]}
        ids = self.sim.world.agents.ids
        for s in b.arrived.nonzero()[0]:
            self.names[s] = ids[s]

    def _observe(self) -> None:
        """Observations and action masks of every living agent."""
        b, w = self.buffers, self.sim.world
        self.encoder.encode()
        if self.primitives:
            b.mask.fill(0)
            live = b.alive.nonzero()[0]
            if len(live):
                b.mask[live] = self.sim.primitives.mask(w, live)
            return
        town_masks(w.tick, *mask_scalars(w), *self.mask_args())

    def mask_args(self) -> tuple[Any, ...]:
        """The arguments of :func:`town_masks` after its per-tick scalars (this episode's arrays)."""
        sim, buffers, args = self._mask_args
        if sim is not self.sim or buffers is not self.buffers:
            a, b = self.sim.world.agents, self.buffers
            args = (b.mask, b.alive, a.needs, self._critical_since, a.option, a.option_started, self.commitment,
                    self.critical, *mask_arrays(self.sim.world))
            self._mask_args = (self.sim, b, args)
        return args


@numba.njit(cache=True)
def town_masks(tick, tod, meal_price, food_price, shower_fee, mask, alive, needs, critical_since, option, started,
               commitment, critical, water_on, social_on, living, wallet, inventory, job, start, end, early, raw, meal,
               clothes):
    """Every slot's option mask row: zeros for empty slots, what may start for agents free to choose.

    Inside the commitment window only the running option (continuing it) is offered, unless a need turned
    critical after the option started: then the agent may switch once (the simulation would accept a
    switch on every tick a need stays critical; offering it once keeps agents from thrashing). Every living
    agent may continue its running option. Updates ``critical_since``: the first tick of each agent's
    current critical streak (``NEVER`` if none). ``tod`` to ``shower_fee`` come from
    :func:`~townlet.policy.options.mask_scalars`, ``water_on`` and the rest from
    :func:`~townlet.policy.options.mask_arrays`.
    """
    fee, social = town_terms(shower_fee, water_on, social_on, living)
    for s in range(len(alive)):
        row = mask[s]
        row[:] = 0
        if not alive[s]:
            continue
        worst = needs[s, 0]
        for k in range(1, needs.shape[1]):
            worst = max(worst, needs[s, k])
        is_critical = worst >= critical
        since = min(critical_since[s], tick) if is_critical else NEVER
        critical_since[s] = since
        running = option[s] >= 0
        if not (running and tick - started[s] < commitment and not (is_critical and started[s] < since)):
            mask_row(row, s, tod, meal_price, food_price, fee, social, wallet, inventory, job, start, end, early, raw,
                     meal, clothes)
        if running:
            row[option[s]] = 1

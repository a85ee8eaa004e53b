"""``TownCore``: one town stepped with slot-indexed arrays (the engine under the single and the batched env).

Everything here is an array over slots: actions in, then observations, action masks, rewards, and the
per-slot flags of what happened this step (an agent left, an agent arrived, the episode hit its horizon).
The PettingZoo env turns those into per-agent dicts; the batched interface stacks them across towns.

Two ways to step (``decisions``):

- ``"ticks"``: a step is one tick; every living agent acts (its mask: the commitment window holds, choosing
  the running option continues it).
- ``"points"`` (decision mode, the semi-MDP): a step runs tick after tick until some agent must decide
  (:func:`~townlet.policy.options.must_decide`: its option finished or failed, it just arrived, or a need
  rose past ``options.decision_level`` or turned critical under its option), an agent leaves, or the horizon
  comes. Only agents at a decision point choose (their mask: what may start; everybody else's: only the
  running option, which they continue whatever they send). ``reward`` is each slot's reward summed over the
  step's ticks, ``discounted`` the sum discounted per tick (``sum_i gamma**i * r_i``),
  :attr:`TownCore.last_ticks` how many ticks it lasted.

In both, an action of -1 leaves the agent to the built-in (scripted) policy for the whole step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numba
import numpy as np

from townlet.config.loader import LoadedConfig
from townlet.observations import ObservationEncoder
from townlet.policy.options import (
    DECISION_POINTS,
    OPTION_COUNT,
    Choice,
    choice_of,
    decision_point,
    mask_arrays,
    mask_scalars,
    town_masks,
)
from townlet.policy.primitives import primitive_count
from townlet.sim.pickling import KeepsViews
from townlet.sim.simulation import Simulation
from townlet.world.events import Event, EventKind

Decisions = Literal["ticks", "points"]
DECISION_MODES = ("ticks", "points")


@dataclass
class TownBuffers:
    """Slot-indexed output arrays of one town (views into a batch, or its own).

    Attributes:
        obs: ``float32[C, D]`` observations (zero rows for empty slots).
        mask: ``int8[C, A]`` action masks (zero rows for empty slots).
        reward: ``float32[C]`` reward of the step (its ticks summed; an exit's terminal penalty included).
        alive: ``bool[C]`` slots holding an agent after the step.
        exited: ``bool[C]`` slots whose agent left this step (terminated).
        arrived: ``bool[C]`` slots whose agent arrived this step (its first observation).
        truncated: ``bool[C]`` slots whose agent reached the horizon this step.
        deciding: ``bool[C]`` agents that choose at the next step (decision mode; every living agent tick by tick).
        discounted: ``float32[C]`` the step's rewards discounted per tick, ``sum_i gamma**i * r_i``.
        need_peak: ``float32[C]`` each agent's worst need deficit at its worst tick of the step.
    """

    obs: np.ndarray
    mask: np.ndarray
    reward: np.ndarray
    alive: np.ndarray
    exited: np.ndarray
    arrived: np.ndarray
    truncated: np.ndarray
    deciding: np.ndarray
    discounted: np.ndarray
    need_peak: np.ndarray

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
            deciding=np.zeros(capacity, dtype=bool),
            discounted=np.zeros(capacity, dtype=np.float32),
            need_peak=np.zeros(capacity, dtype=np.float32),
        )


def action_count(loaded: LoadedConfig, sim: Simulation) -> int:
    """Size of the Discrete action space: 7 options, or 5 + affordances primitives."""
    if loaded.config.env.action_level == "primitives":
        return primitive_count(sim.world)
    return OPTION_COUNT


class Fold(NamedTuple):
    """What :func:`_fold_tick` sums and writes over a decision-mode step (the env's own buffers)."""

    reward: np.ndarray  # float32[C] this tick's rewards
    total: np.ndarray  # float32[C] the step's reward sums
    discounted: np.ndarray  # float32[C] ... discounted
    need_peak: np.ndarray  # float32[C] the step's worst need of each agent
    deciding: np.ndarray  # bool[C] out: at a decision point
    builtin: np.ndarray  # bool[C] left to the built-in policy this step
    acts: np.ndarray  # int64[C] out: the next tick's actions
    alive: np.ndarray  # bool[C] the agent table's
    needs: np.ndarray  # float32[C, 4] ... and its needs


class TownCore(KeepsViews):
    """One town for RL: reset with a seed, step with an ``int[C]`` action array, read slot-indexed buffers.

    Args:
        loaded: The config (its ``features.observations`` is the variant).
        buffers: Where to write; allocated when None.
        decisions: ``"ticks"`` or ``"points"`` (decision mode; see the module docstring).
        gamma: Discount per tick of the ``discounted`` reward sums.

    Attributes:
        sim: The current episode's simulation.
        encoder: Its observation encoder.
        ticks: Ticks simulated in this episode.
        last_ticks: Ticks the last step lasted (1 tick by tick).
        done: The horizon was reached (call :meth:`reset`).
        exits: Slot -> (agent id, reason) for the agents that left in the last step.
        names: Agent id per slot as of the last step.
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        buffers: TownBuffers | None = None,
        decisions: Decisions = "ticks",
        gamma: float = 0.99,
    ) -> None:
        if decisions not in DECISION_MODES:
            raise ValueError(f"decisions must be one of {', '.join(DECISION_MODES)}, not {decisions!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], not {gamma}")
        self.loaded = loaded
        self.decisions: Decisions = decisions
        self.points = decisions == "points"
        self.gamma = np.float32(gamma)
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
        self.last_ticks = 0
        self.done = False
        self.exits: dict[int, tuple[str, str]] = {}
        self.names: list[str | None] = [None] * cap
        self._spawn = np.zeros(cap, dtype=np.int64)
        self._population = b""
        self._flagged = False
        self.commitment = DECISION_POINTS if self.points else loaded.config.options.commitment_window
        self._acts = np.full(cap, -1, dtype=np.int64)  # the actions of each tick of a decision-mode step
        self._sum = np.zeros(cap, dtype=np.float32)  # scratch of a decision-mode step's reward sum
        # (sim, buffers, arguments) the mask arguments were built for
        self._mask_args: tuple[Any, Any, tuple[np.ndarray, tuple, tuple] | None] = (None, None, None)

    def reset(self, seed: int) -> None:
        """Start a new episode: a fresh town seeded with ``seed``; every agent's first observation is written."""
        b = self.buffers
        self.sim = Simulation(self.loaded, seed=seed)
        self.sim.time_phases = False  # nobody reads per-phase times here; a dozen clock reads per tick saved
        b.obs[...] = 0.0
        self.encoder = ObservationEncoder(self.sim.world, out=b.obs)
        self.ticks = 0
        self.last_ticks = 0
        self.done = False
        self.exits = {}
        a = self.sim.world.agents
        b.alive[:] = a.alive
        b.arrived[:] = a.alive
        b.deciding[:] = a.alive
        b.exited[:] = False
        b.truncated[:] = False
        b.reward[:] = 0.0
        b.discounted[:] = 0.0
        np.max(a.needs, axis=1, out=b.need_peak, where=a.alive[:, None], initial=0.0)
        self._spawn[:] = a.spawn_tick
        self._population = a.alive.tobytes() + a.spawn_tick.tobytes()
        self._flagged = True
        self.names = list(a.ids)
        self._observe()

    def step(self, actions: np.ndarray, observe: bool = True, limit: int = 0) -> None:
        """Advance with ``actions`` (``int[C]``; -1: the built-in policy): one tick, or in decision mode several.

        In decision mode the town ticks on until somebody must decide (see the module docstring), or for at
        most ``limit`` ticks when ``limit > 0``; ``limit < 0`` leaves the town as it is (a step of no ticks:
        nothing happens, the actions are not taken). ``observe=False`` leaves the observations and masks to
        the caller (a batch's :class:`~townlet.env.stacked.StackedObserver` writes them for all its towns).
        """
        b = self.buffers
        if limit < 0:
            for flags in (b.exited, b.arrived, b.truncated):
                flags[:] = False
            for sums in (b.reward, b.discounted, b.need_peak):
                sums[:] = 0.0
            self.exits, self.last_ticks = {}, 0
        elif not self.points:
            self._tick(actions)
            b.discounted[:] = b.reward
            np.max(self.sim.world.agents.needs, axis=1, out=b.need_peak, where=b.alive[:, None], initial=0.0)
            b.deciding[:] = b.alive
            self.last_ticks = 1
        else:
            self._until_decision(actions, limit)
        if observe:
            self._observe()

    def _until_decision(self, actions: np.ndarray, limit: int) -> None:
        """Decision mode: tick until an agent must decide or leaves, or the horizon; sums the rewards."""
        b, a = self.buffers, self.sim.world.agents
        acts, (_, choice, _) = self._acts, self.mask_args()
        # Agents at a decision point take their action; the others continue (-1 stays with the built-in policy).
        np.copyto(acts, np.where(actions < 0, -1, np.where(b.deciding, actions, a.option)))
        sums = Fold(
            reward=b.reward,
            total=self._sum,
            discounted=b.discounted,
            need_peak=b.need_peak,
            deciding=b.deciding,
            builtin=actions < 0,
            acts=acts,
            alive=a.alive,
            needs=a.needs,
        )
        sums.total[:] = 0.0
        b.discounted[:] = 0.0
        b.need_peak[:] = 0.0
        fold = tuple(sums)  # plain: crosses into compiled code faster than a named tuple
        discount = np.float32(1.0)
        ticks = 0
        while True:
            self._tick(acts)
            ticks += 1
            deciding = _fold_tick(fold, discount, self.sim.world.tick, choice)
            discount *= self.gamma
            if self.done or self._flagged or deciding or ticks == limit:
                break
        b.reward[:] = sums.total
        self.last_ticks = ticks

    def _tick(self, actions: np.ndarray) -> None:
        """One tick: simulate, then this tick's reward and who left or arrived."""
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
            rules = self.sim.primitives
            assert rules is not None  # the simulation builds them whenever env.action_level is "primitives"
            b.mask.fill(0)
            live = b.alive.nonzero()[0]
            if len(live):
                b.mask[live] = rules.mask(w, live)
            return
        town_masks(w.tick, *mask_scalars(w), *self.mask_args())

    def mask_args(self) -> tuple[np.ndarray, tuple, tuple]:
        """The arguments of :func:`~townlet.policy.options.town_masks` after its per-tick scalars (this episode's).

        Built once per episode (and buffers): they hold the town's own arrays, which live as long as the town.
        """
        sim, buffers, args = self._mask_args
        if args is None or sim is not self.sim or buffers is not self.buffers:
            ctl = self.sim.controller
            choice = choice_of(self.sim.world, self.commitment, ctl.critical_since, ctl.point_at)
            args = (self.buffers.mask, tuple(choice), tuple(mask_arrays(self.sim.world)))  # plain: faster calls
            self._mask_args = (self.sim, self.buffers, args)
        return args


@numba.njit(cache=True)
def _fold_tick(fold_fields: tuple, discount: np.float32, tick: int, choice_fields: tuple) -> bool:
    """Fold a tick of a decision-mode step: reward sums, need peaks, who decides, the next tick's actions.

    Returns whether anybody is at a decision point (:func:`~townlet.policy.options.decision_point`). The
    bundles come as plain tuples: a :class:`Fold` and a :class:`~townlet.policy.options.Choice`
    (:meth:`TownCore.mask_args`).
    """
    f, choice = Fold(*fold_fields), Choice(*choice_fields)
    alive, needs, option, started = f.alive, f.needs, choice.option, choice.started
    reward, total, discounted, need_peak = f.reward, f.total, f.discounted, f.need_peak
    deciding, builtin, acts = f.deciding, f.builtin, f.acts
    anybody = False
    for s in range(len(alive)):
        r = reward[s]
        total[s] += r
        discounted[s] += discount * r
        if not alive[s]:
            deciding[s] = False
            acts[s] = -1
            continue
        worst = needs[s, 0]
        for k in range(1, needs.shape[1]):
            worst = max(worst, needs[s, k])
        need_peak[s] = max(need_peak[s], worst)
        here = decision_point(s, option, started, choice.point_at, tick)
        deciding[s] = here
        anybody = anybody or here
        acts[s] = -1 if builtin[s] else option[s]
    return anybody

"""``Simulation``: the one entry point that advances time, phase by timed phase.

A tick, in order: apply queued commands -> policy decides (options -> steps) -> queues, reservations
and movement -> affordances progress and complete (hooks fire) -> needs decay, economy, employment,
weather and utilities -> relationships -> KPIs. Later layers (perturbations, lifecycle, rewards,
observations, telemetry) insert their own timed phases with :meth:`Simulation.add_phase`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from townlet.config.loader import LoadedConfig, load_config
from townlet.lifecycle import Lifecycle
from townlet.narration import Narrator
from townlet.perturbations import Perturbations
from townlet.policy.controller import OptionController
from townlet.policy.options import DECISION_POINTS, OPTION_COUNT, Option
from townlet.policy.primitives import PrimitiveRules
from townlet.policy.scripted import OptionPolicy, RandomPolicy, ScriptedPolicy
from townlet.policy.settling import builtin_scan, decide_scan, pressing_needs
from townlet.rewards import Rewards
from townlet.sim.clock import Clock
from townlet.sim.kpis import KpiTracker
from townlet.sim.pickling import KeepsViews
from townlet.sim.timings import TickTimings
from townlet.world import actions, scans
from townlet.world.events import Event
from townlet.world.rng import RngStreams
from townlet.world.state import World

Phase = Callable[["Simulation"], object]  # the return value is ignored


class TickResult:
    """What one call to :meth:`Simulation.step` produced.

    Attributes:
        tick: The tick that was simulated.
        events: Its events, in order.
    """

    __slots__ = ("_names", "_reads", "events", "tick")

    def __init__(self, tick: int, events: list[Event], names: tuple[str, ...] = (), reads: list[float] | None = None):
        self.tick = tick
        self.events = events
        self._names, self._reads = names, reads  # the timed phases and the clock before and after each

    @property
    def phase_s(self) -> dict[str, float]:
        """Seconds spent in each phase (empty when :attr:`Simulation.time_phases` is off)."""
        r = self._reads
        return {} if r is None else {name: r[i + 1] - r[i] for i, name in enumerate(self._names)}


class Simulation(KeepsViews):
    """A town plus its policy, advanced one tick at a time by :meth:`step`.

    Args:
        loaded: A loaded config (the shipped default when None).
        seed: The run seed (the config's ``seed`` when None); seeds the three RNG streams.
        policy: ``"scripted"``, ``"random"``, or any :class:`OptionPolicy`.
    """

    def __init__(
        self, loaded: LoadedConfig | None = None, seed: int | None = None, policy: str | OptionPolicy = "scripted"
    ) -> None:
        self.loaded = loaded or load_config()
        self.config = self.loaded.config
        self.seed = int(self.config.seed if seed is None else seed)
        self.rng = RngStreams(self.seed)
        self.world = World(self.loaded, self.rng)
        self.controller = OptionController(self.world)
        if policy == "scripted":
            self.policy: OptionPolicy = ScriptedPolicy(self.world)
        elif policy == "random":
            self.policy = RandomPolicy()
        elif isinstance(policy, str):
            raise ValueError(f"unknown policy {policy!r} (scripted or random)")
        else:
            self.policy = policy
        self.kpis = KpiTracker(self.world)
        self.clock = Clock(self.config.time.live_tick_seconds)  # live pacing (console speed/pause)
        self.invalid_actions = 0
        self.applied_migrations: list[dict[str, Any]] = []  # snapshot migrations this state went through
        self.actor: Any = None  # a learned policy with ``act(sim) -> int[capacity]`` (townlet.policy.driver)
        self.recorded_policy: dict[str, Any] | None = None  # the policy a restored snapshot names (sim/driving.py)
        self.sidecars: dict[str, Any] = {}  # owners of state beside the town: telemetry, stability (sim/sidecars.py)
        self.sidecar_pending: dict[str, Any] = {}  # their restored sections, until an owner attaches
        self.commands: list[Callable[[World], Any]] = []
        self.after_step: list[Phase] = []  # called between ticks (autosave, hot reload): the state is whole
        self.reloader: Any = None  # a townlet.sim.reload.HotReloader once hot reload is in use
        self.phases: list[tuple[str, Phase]] = [
            ("commands", Simulation._apply_commands),
            ("policy", Simulation._decide),
            ("arbitrate", Simulation._arbitrate),
            ("affordances", Simulation._affordances),
            ("world", Simulation._world_rules),
            ("relationships", Simulation._relationships),
            ("kpis", Simulation._kpis),
        ]
        self.time_phases = True  # time each phase (``phase_total``, ``TickResult.phase_s``); the RL env turns it off
        self.ticks_run = 0
        telemetry = self.config.telemetry
        totals = {name: 0.0 for name, _ in self.phases}
        self.timings = TickTimings(totals, telemetry.perf_window, telemetry.slowest_ticks)
        self._critical = np.float32(self.config.needs.critical)
        self._interrupt_level = np.float32(self.config.options.interrupt_level)
        self._slot_phase = np.arange(self.world.agents.capacity) % self.config.options.interrupt_every
        # scratch (never state): the free agents and the pressing ones builtin_scan / pressing_needs find
        self._free = np.empty(self.world.agents.capacity, dtype=np.int64)
        self._due = np.empty(self.world.agents.capacity, dtype=np.int64)
        self._actions: np.ndarray | None = None
        self._settled: list[Event] = []  # events of settling between ticks, for the next tick's list
        self._running = np.full(self.world.agents.capacity, -1, dtype=np.int8)
        self._no_actions = np.full(self.world.agents.capacity, -1, dtype=np.int64)
        # env.action_level: external actions are options, or primitives (wait, moves, interactions)
        self.primitives = PrimitiveRules(self.world) if self.config.env.action_level == "primitives" else None
        for _ in range(self.config.population.agents):
            self.world.spawn()
        self.invariant_problems = self.world.economy.check_invariant(self.world)
        self.world.events.clear()
        self._settle()
        # Life and drama: always installed, their feature flags decide whether they act.
        self.perturbations = Perturbations(self.world)
        self.perturbations.summon = self.controller.meet
        self.lifecycle = Lifecycle(self.world)
        self.lifecycle.on_exit.append(self.controller.forget)
        self.rewards = Rewards(self.world)
        self.narration = Narrator(self.world)
        self.kpis.reward_stats = self.rewards.stats
        self.add_phase("perturbations", Simulation._perturb, after="commands")
        self.add_phase("lifecycle", Simulation._lifecycle, after="world")
        self.add_phase("rewards", Simulation._reward, after="relationships")
        self.add_phase("narration", Simulation._narrate, after="rewards")

    # The life-and-drama phases as functions (not lambdas), so a simulation pickles and deep-copies.
    def _perturb(self) -> None:
        self.perturbations.update(self.world)

    def _lifecycle(self) -> None:
        self.lifecycle.update(self.world)

    def _reward(self) -> None:
        self.rewards.update(self.world)

    def _narrate(self) -> None:
        self.narration.update(self.world)

    @property
    def phase_total(self) -> dict[str, float]:
        """Running seconds per phase over every timed tick (the dict itself: a phase's entry may be removed)."""
        return self.timings.fold()

    @property
    def tick(self) -> int:
        """The next tick to be simulated."""
        return self.world.tick

    def add_phase(self, name: str, phase: Phase, after: str) -> None:
        """Insert a timed phase after an existing one (later layers plug in here)."""
        names = [n for n, _ in self.phases]
        if name in names:
            raise ValueError(f"phase {name!r} already exists")
        self.phases.insert(names.index(after) + 1, (name, phase))
        self.phase_total[name] = 0.0

    def enqueue(self, command: Callable[[World], Any]) -> None:
        """Queue a change to apply at the start of the next tick (in arrival order)."""
        self.commands.append(command)

    def apply_pending(self) -> list[Event]:
        """Apply the queued commands now, between two ticks (how a paused town answers its console).

        Returns the events they emitted. ``world.events`` keeps showing the last tick's events, and the
        returned ones are not part of the next tick's: publish them with the amended state
        (:meth:`townlet.telemetry.encoder.TelemetryEncoder.amend`).
        """
        w = self.world
        last, w.events = w.events, []
        try:
            self._apply_commands()
            return w.events
        finally:
            w.events = last

    def step(self, actions: np.ndarray | None = None) -> TickResult:
        """Simulate one tick.

        Args:
            actions: Optional ``int[capacity]`` option per slot chosen by an external (learned) policy
                (a primitive per slot when ``env.action_level`` is ``primitives``); -1 leaves that agent to
                the built-in policy. Actions its mask forbids are ignored and counted in ``invalid_actions``.
                When None and an :attr:`actor` is set (a learned policy), the actor chooses.
        """
        w = self.world
        w.events, self._settled = self._settled, []  # the tick's events start with what settling emitted
        if actions is None and self.actor is not None:
            actions = self.actor.act(self)
        self._actions = actions
        if self.time_phases:
            # One clock read per phase (each phase ends where the next begins), folded into the totals later.
            clock, phases = time.perf_counter, self.phases
            reads = [clock()]
            mark = reads.append
            for _, phase in phases:
                phase(self)
                mark(clock())
            self.timings.record_phases(w.tick, phases, reads)
            result = TickResult(w.tick, w.events, self.timings.names, reads)
        else:
            for _, phase in self.phases:
                phase(self)
            result = TickResult(w.tick, w.events)
        if w.hooks.has_global("tick"):
            w.hook_event("tick", -1, detail=str(w.tick))
        w.tick += 1
        self.ticks_run += 1
        self._settle()
        for hook in self.after_step:
            hook(self)
        return result

    def run(self, ticks: int, progress: Callable[[int], None] | None = None, every: int = 100) -> None:
        """Step ``ticks`` times with the built-in policy, calling ``progress(done)`` every ``every`` ticks."""
        for i in range(ticks):
            self.step()
            if progress is not None and (i + 1) % every == 0:
                progress(i + 1)
        if progress is not None:
            progress(ticks)

    def perf(self) -> dict[str, Any]:
        """Tick timings over the last ``telemetry.perf_window`` ticks, against the population's target.

        See :meth:`townlet.sim.timings.TickTimings.summary` for the fields (wall clock: not deterministic).
        """
        agents = int(self.world.agents.alive.sum())
        return self.timings.summary(agents, self.config.telemetry.target_tick_ms(agents))

    def masks(self, decision_points: bool = False) -> np.ndarray:
        """``bool[capacity, A]`` action mask for every slot (rows of empty slots are all False).

        ``A`` is 7 options (the one option mask of :mod:`townlet.policy.options`: tick by tick with the
        commitment window, or with ``decision_points`` the semi-MDP mask), or ``5 + affordances`` primitives
        when ``env.action_level`` is ``primitives``.
        """
        slots = self.world.agents.slots()
        if self.primitives is not None:
            rows = self.primitives.mask(self.world, slots)
        else:
            rows = self.controller.masks(slots, DECISION_POINTS if decision_points else None)
        full = np.zeros((self.world.agents.capacity, rows.shape[1]), dtype=bool)
        full[slots] = rows
        return full

    # -- phases -------------------------------------------------------------------------------------

    def _settle(self) -> None:
        """Between ticks: options whose plan ran out end now, so who must decide next is known (see env).

        Runs after ``tick`` advanced, so a step it starts is timed as if the next tick had started it, and
        what it emits is kept for the next tick's events (``world.events`` still shows the tick just run).
        """
        w = self.world
        finished, w.events = w.events, []
        self.controller.settle()
        self._settled, w.events = w.events, finished

    def _apply_commands(self) -> None:
        # Take exactly what has arrived so far: another thread (the console) may append meanwhile.
        queued = self.commands
        if not queued:
            return
        pending = queued[: len(queued)]
        del queued[: len(pending)]
        for command in pending:
            command(self.world)

    def _decide(self) -> None:
        w, a, ctl = self.world, self.world.agents, self.controller
        actions = self._actions
        external = actions is not None
        if actions is not None:
            self._running[:] = a.option  # what each agent was doing when its action was chosen
        else:
            actions = self._no_actions
        # Settle (only a command or a perturbation this tick leaves anything to), then who the built-in policy
        # serves: one compiled call when there is nothing to settle and no external action to apply first.
        streaks, rules = ctl.scan_inputs()
        free, turn = self._free, w.tick % self.config.options.interrupt_every
        stalled, idle, n, any_builtin, pressing = decide_scan(
            a.alive,
            a.needs,
            a.activity,
            a.option,
            a.option_started,
            a.step_started,
            actions,
            self._slot_phase,
            streaks,
            (ctl.found, free, self._due),
            w.tick,
            (
                *rules,
                float(self._interrupt_level),
                turn,
                ctl.commitment,
                external,
            ),
        )
        if stalled or idle or external:
            ctl.settle_found(stalled, idle, 0, points=False)
            if external and self.primitives is not None:
                chosen = (a.alive & (actions >= 0)).nonzero()[0]
                self.invalid_actions += self.primitives.apply(w, chosen, actions[chosen])
            elif external:
                self._apply_external(scans.switching(a.alive, actions, a.option, self._running))
            n, any_builtin, pressing = builtin_scan(
                a.alive,
                actions,
                a.option,
                a.needs,
                a.option_started,
                self._slot_phase,
                w.tick,
                turn,
                (self._critical, self._interrupt_level),
                ctl.commitment,
                free,
                self._due,
            )
        if n:
            slots = free[:n].tolist()
            for slot, row in zip(slots, ctl.masks(free[:n]), strict=True):
                ctl.start(slot, Option(self.policy.choose(w, slot, row)))
            pressing = self._find_pressing(actions)  # the starts changed who is busy: look again
        if pressing:
            self._interrupt_for_pressing_needs(pressing)

    def _apply_external(self, switching: np.ndarray) -> None:
        """Start the external choices of agents switching options (``switching``: their slots).

        Choosing the running option continues it, also when it ended earlier this tick (the choice was
        made while it ran): those never get here. Only real switches are checked, against the option mask
        (:meth:`OptionController.masks`, tick by tick: the commitment window holds unless a need turned
        critical): a choice the mask allows always takes effect.
        """
        if not len(switching):
            return
        ctl = self.controller
        assert self._actions is not None
        for slot, row in zip(switching.tolist(), ctl.masks(switching), strict=True):
            choice = int(self._actions[slot])
            if not (0 <= choice < OPTION_COUNT) or not row[choice]:
                self.invalid_actions += 1
                continue
            ctl.start(slot, Option(choice))

    def _find_pressing(self, actions: np.ndarray) -> int:
        """How many agents :func:`~townlet.policy.settling.pressing_needs` finds now (their slots first in ``_due``)."""
        w, a = self.world, self.world.agents
        return int(
            pressing_needs(
                a.alive,
                actions,
                a.needs,
                a.option,
                a.option_started,
                self._slot_phase,
                w.tick,
                w.tick % self.config.options.interrupt_every,
                (self._critical, self._interrupt_level),
                self.controller.commitment,
                self._due,
            )
        )

    def _interrupt_for_pressing_needs(self, n: int) -> None:
        """Let the built-in policy reconsider the ``n`` agents whose hunger or fatigue has grown pressing.

        Their slots are the first ``n`` of ``_due`` (:func:`~townlet.policy.settling.pressing_needs`'s rule: above
        ``needs.critical`` the commitment window is overridden; above ``options.interrupt_level`` agents
        reconsider every ``options.interrupt_every`` ticks once their window has passed; agents with an
        external action are left to it).
        """
        w, a, ctl = self.world, self.world.agents, self.controller
        slots = self._due[:n].copy()
        for slot, row in zip(slots.tolist(), ctl.masks(slots, commitment=0), strict=True):
            choice = self.policy.choose(w, slot, row)
            if int(choice) != int(a.option[slot]):
                ctl.start(slot, Option(choice))

    def _arbitrate(self) -> None:
        self.world.arbitrate()

    def _affordances(self) -> None:
        actions.progress(self.world)

    def _world_rules(self) -> None:
        w = self.world
        w.needs.decay(w)
        w.economy.update(w)
        w.employment.update(w)
        w.weather.update(w)
        w.utilities.update(w)

    def _relationships(self) -> None:
        self.world.relationships.update(self.world)

    def _kpis(self) -> None:
        self.kpis.update(self.world, self.world.events, self.rewards.last)

    # -- identity -----------------------------------------------------------------------------------

    def state_hash(self) -> str:
        """A digest of the whole town state: equal for equal config, seed and inputs.

        Derived from the snapshot capture (:func:`townlet.sim.snapshot.state_hash`): whatever a snapshot saves
        is hashed; process machinery (timings, the driving policy) is out by the same rules that keep it out
        of snapshots.
        """
        from townlet.sim import snapshot  # snapshot's sections name this class: imported once both exist

        return snapshot.state_hash(self)

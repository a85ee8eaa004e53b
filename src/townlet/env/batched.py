"""``BatchedTowns``: N towns stepped together, every input and output a stacked ``[N, capacity, ...]`` array.

No per-agent Python objects: actions come in as ``int[N, C]`` (slot-indexed, -1 = built-in policy) and
observations, masks, rewards and flags go out as preallocated stacked buffers that each town's
:class:`~townlet.env.core.TownCore` writes in place; once the towns of a process have stepped, one compiled
call (:class:`~townlet.env.stacked.StackedObserver`) writes all their observations and masks. Town ``i`` of a
batch reset with seed ``s`` is the same episode as a single env reset with seed ``s + i`` (and its ``e``-th
automatic reset uses ``s + i + e·N``).

With ``workers=k`` the towns are split into ``k + 1`` contiguous shares: ``k`` forked worker processes step
theirs, writing into the same buffers in shared memory, while this process steps the first share. The
per-town tick is single-threaded, so extra cores are where batched throughput comes from: on an ``n``-core
machine use ``workers=n - 1``. Results are identical either way.

In decision mode (``decisions="points"``, see :mod:`townlet.env.core`) every town runs, within one batch
step, to its own next decision point: towns advance at their own pace, :attr:`BatchedTowns.ticks` says how
far each went, and :attr:`BatchedTowns.deciding` who chooses at the next step.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from townlet.config.loader import LoadedConfig
from townlet.env.core import Decisions, TownBuffers, TownCore
from townlet.env.stacked import StackedObserver
from townlet.sim.kpis import COUNTS
from townlet.sim.pickling import KeepsViews

if TYPE_CHECKING:
    from townlet.env.workers import WorkerPool

FIELDS = (
    "obs",
    "masks",
    "rewards",
    "alive",
    "terminated",
    "arrived",
    "truncated",
    "deciding",
    "discounted",
    "need_peak",
    "final_obs",
    "final_masks",
    "reset_towns",
    "ticks",
    "limit",
    "actions",
    "episodes",
    "kpi_totals",
    "kpi_final",
)
KPI_TOTALS = COUNTS  # columns of ``kpi_totals``: the town's KPI counts over its current episode


def kpi_totals(sim: Any) -> np.ndarray:
    """A town's KPI counts so far this episode (its :class:`~townlet.sim.kpis.KpiTracker` totals)."""
    return np.array(sim.kpis.totals)


def batch_shapes(n: int, cap: int, size: int, actions: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """Shape and dtype of every stacked buffer of a batch."""
    return {
        "obs": ((n, cap, size), np.float32),
        "masks": ((n, cap, actions), np.int8),
        "rewards": ((n, cap), np.float32),
        "alive": ((n, cap), np.bool_),
        "terminated": ((n, cap), np.bool_),
        "arrived": ((n, cap), np.bool_),
        "truncated": ((n, cap), np.bool_),
        "deciding": ((n, cap), np.bool_),
        "discounted": ((n, cap), np.float32),
        "need_peak": ((n, cap), np.float32),
        "final_obs": ((n, cap, size), np.float32),
        "final_masks": ((n, cap, actions), np.int8),
        "reset_towns": ((n,), np.bool_),
        "ticks": ((n,), np.int64),
        "limit": ((n,), np.int64),
        "actions": ((n, cap), np.int64),
        "episodes": ((n,), np.int64),
        "kpi_totals": ((n, len(KPI_TOTALS)), np.float64),
        "kpi_final": ((n, len(KPI_TOTALS)), np.float64),
    }


def town_buffers(arrays: dict[str, np.ndarray], i: int) -> TownBuffers:
    """Town ``i``'s views of the stacked buffers."""
    return TownBuffers(
        arrays["obs"][i],
        arrays["masks"][i],
        arrays["rewards"][i],
        arrays["alive"][i],
        arrays["terminated"][i],
        arrays["arrived"][i],
        arrays["truncated"][i],
        arrays["deciding"][i],
        arrays["discounted"][i],
        arrays["need_peak"][i],
    )


def observer_of(towns: dict[int, TownCore]) -> StackedObserver | None:
    """The stacked observer for these towns (None for primitive actions: they observe one by one)."""
    if not towns or any(town.primitives for town in towns.values()):
        return None
    return StackedObserver(list(towns.values()))


def step_towns(
    towns: dict[int, TownCore],
    arrays: dict[str, np.ndarray],
    n_towns: int,
    seed: int,
    autoreset: bool,
    observer: StackedObserver | None = None,
) -> None:
    """Step the given towns (by batch index) with ``arrays["actions"]``, resetting finished ones if asked.

    With an ``observer`` (built by :func:`observer_of` for these towns) all observations and masks are written
    by one compiled call after the towns have stepped.
    """
    done, actions, ticks, limit = arrays["reset_towns"], arrays["actions"], arrays["ticks"], arrays["limit"]
    for i, town in towns.items():
        town.step(actions[i], observe=observer is None, limit=int(limit[i]))
        ticks[i] = town.last_ticks
    if observer is not None:
        observer()
    for i, town in towns.items():
        done[i] = town.done and autoreset
        if done[i]:
            arrays["kpi_final"][i] = kpi_totals(town.sim)
            arrays["final_obs"][i] = arrays["obs"][i]
            arrays["final_masks"][i] = arrays["masks"][i]
            arrays["episodes"][i] += 1
            kept = {k: arrays[k][i].copy() for k in ("truncated", "rewards", "terminated", "discounted", "need_peak")}
            town.reset(seed + i + int(arrays["episodes"][i]) * n_towns)
            for k, v in kept.items():
                arrays[k][i] = v
        arrays["kpi_totals"][i] = kpi_totals(town.sim)


def reset_towns(towns: dict[int, TownCore], arrays: dict[str, np.ndarray], seed: int) -> None:
    """Reset the given towns: town ``i`` gets seed ``seed + i``."""
    for i, town in towns.items():
        arrays["episodes"][i] = 0
        arrays["reset_towns"][i] = False
        arrays["ticks"][i] = 0
        town.reset(seed + i)
        arrays["kpi_totals"][i] = kpi_totals(town.sim)


class BatchedTowns(KeepsViews):
    """A batch of towns for training throughput.

    Args:
        n_towns: How many towns.
        config: YAML config path (default: the shipped town).
        variant: Observation variant (``features.observations`` when None).
        agents: Initial population per town.
        overrides: Dotted config overrides (mapping or ``key=value`` strings).
        autoreset: Start a town's next episode as soon as it reaches the horizon (its last observations are
            kept in :attr:`final_obs`).
        workers: 0 steps every town in this process; ``k > 0`` forks ``k`` worker processes and splits the
            towns into ``k + 1`` shares, this process stepping the first.
        decisions: ``"ticks"`` (a step is a tick) or ``"points"`` (decision mode: each town steps to its next
            decision point).
        gamma: Discount per tick of :attr:`discounted`.

    Attributes:
        obs: ``float32[N, C, D]`` observations (zero rows for empty slots).
        masks: ``int8[N, C, A]`` action masks.
        rewards: ``float32[N, C]`` rewards of the last step.
        alive: ``bool[N, C]`` slots holding an agent.
        terminated: ``bool[N, C]`` agents that left town in the last step.
        truncated: ``bool[N, C]`` agents whose episode hit the horizon in the last step.
        arrived: ``bool[N, C]`` agents whose first observation this is (newcomers, or a fresh episode).
        deciding: ``bool[N, C]`` agents that choose at the next step (every living agent tick by tick).
        discounted: ``float32[N, C]`` the last step's rewards discounted per tick (``sum_i gamma**i * r_i``).
        need_peak: ``float32[N, C]`` each agent's worst need deficit at its worst tick of the last step.
        ticks: ``int64[N]`` ticks each town advanced in the last step (1 tick by tick).
        final_obs: ``float32[N, C, D]``: for towns reset by ``autoreset`` in the last step, the observations
            their episode ended with (rows of other towns are stale); ``final_masks`` the same for the masks.
        reset_towns: ``bool[N]`` towns reset by ``autoreset`` in the last step.
        kpi_totals: ``float64[N, len(KPI_TOTALS)]`` each town's KPI counts over its current episode (``KPI_TOTALS``);
            ``kpi_final`` holds them as a town's last episode ended (towns reset by ``autoreset``).
        towns: Batch index -> :class:`TownCore` of the towns this process steps (all of them when
            ``workers=0``; the workers' towns live in their processes).
        observer: The :class:`~townlet.env.stacked.StackedObserver` that writes those towns' observations
            and masks in one compiled call per step (None with primitive actions: each town observes alone).
    """

    def __init__(
        self,
        n_towns: int,
        config: str | Path | None = None,
        *,
        variant: str | None = None,
        agents: int | None = None,
        overrides: Any = None,
        autoreset: bool = True,
        workers: int = 0,
        decisions: Decisions = "ticks",
        gamma: float = 0.99,
    ) -> None:
        from townlet.env import env_config

        if n_towns < 1:
            raise ValueError("n_towns must be at least 1")
        if workers < 0:
            raise ValueError("workers must be 0 (in process) or more")
        loaded = env_config(config, variant=variant, agents=agents, overrides=overrides)
        self.loaded: LoadedConfig = loaded
        self.n_towns = n_towns
        self.autoreset = autoreset
        self.decisions = decisions
        first = TownCore(loaded, decisions=decisions, gamma=gamma)
        cap, size, actions = first.capacity, first.obs_size, first.actions
        self.capacity, self.obs_size, self.actions = cap, size, actions
        self.layout = first.layout
        self.seed = int(loaded.config.seed)
        shapes = batch_shapes(n_towns, cap, size, actions)
        shares = [share.tolist() for share in np.array_split(np.arange(n_towns), min(workers, n_towns - 1) + 1)]
        self._pool: WorkerPool | None = None
        if len(shares) > 1:
            from townlet.env.workers import WorkerPool

            self._pool = WorkerPool(loaded, shapes, n_towns, shares[1:], autoreset, decisions, gamma)
            arrays = self._pool.arrays
        else:
            arrays = {name: np.zeros(shape, dtype=dtype) for name, (shape, dtype) in shapes.items()}
        self.towns: dict[int, TownCore] = {}  # the towns this process steps, by batch index
        for i in shares[0]:
            town = first if i == 0 else TownCore(loaded, decisions=decisions, gamma=gamma)
            town.buffers = town_buffers(arrays, i)
            self.towns[i] = town
        self.arrays = arrays
        self.observer = observer_of(self.towns)
        self.obs, self.masks, self.rewards = arrays["obs"], arrays["masks"], arrays["rewards"]
        self.alive, self.terminated, self.arrived = arrays["alive"], arrays["terminated"], arrays["arrived"]
        self.truncated, self.final_obs, self.final_masks = (
            arrays["truncated"],
            arrays["final_obs"],
            arrays["final_masks"],
        )
        self.deciding, self.discounted, self.need_peak = arrays["deciding"], arrays["discounted"], arrays["need_peak"]
        self.reset_towns, self.ticks = arrays["reset_towns"], arrays["ticks"]
        self.kpi_totals, self.kpi_final = arrays["kpi_totals"], arrays["kpi_final"]

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Reset every town (town ``i`` gets seed ``seed + i``); return ``(obs, masks)``."""
        if seed is not None:
            self.seed = int(seed)
        self._alongside("reset", reset_towns, self.towns, self.arrays, self.seed)
        return self.obs, self.masks

    def step(
        self,
        actions: np.ndarray,
        limit: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every town with ``actions`` (``int[N, C]``); return ``(obs, masks, rewards, terminated, truncated)``.

        All returned arrays are the batch's own buffers, overwritten by the next call. In decision mode each
        town runs to its next decision point (:attr:`ticks`, :attr:`deciding`), or for at most ``limit[i]``
        ticks where that is positive; a town with ``limit[i] < 0`` is left as it is this step.
        """
        if actions.shape != (self.n_towns, self.capacity):
            raise ValueError(f"actions must have shape {(self.n_towns, self.capacity)}, got {actions.shape}")
        self.arrays["actions"][...] = actions
        self.arrays["limit"][...] = 0 if limit is None else limit
        self._alongside(
            "step", step_towns, self.towns, self.arrays, self.n_towns, self.seed, self.autoreset, self.observer
        )
        return self.obs, self.masks, self.rewards, self.terminated, self.truncated

    def _alongside(self, command: str, own: Any, *args: Any) -> None:
        """Run ``command`` on the workers and ``own(*args)`` on this process's towns meanwhile.

        The workers' answers are gathered even when this process's share raised, so the pool never holds
        a pending command.
        """
        if self._pool is None:
            own(*args)
            return
        self._pool.send(command, self.seed)
        try:
            own(*args)
        finally:
            self._pool.gather()

    def __getstate__(self) -> dict[str, Any]:
        if self._pool is not None:
            raise TypeError(
                "a BatchedTowns with worker processes cannot be pickled or copied (its towns live in "
                "the workers); build another with the same arguments, or use workers=0"
            )
        return {**self.__dict__, "observer": None}  # numba typed lists: rebuilt below

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.observer = observer_of(self.towns)

    def state_hashes(self) -> list[str]:
        """``Simulation.state_hash()`` of every town, in order."""
        own = [town.sim.state_hash() for town in self.towns.values()]
        return own + (self._pool.call("hashes", self.seed) if self._pool is not None else [])

    @property
    def invalid_actions(self) -> int:
        """Masked actions ignored by the simulations, summed over the towns' current episodes."""
        own = sum(t.sim.invalid_actions for t in self.towns.values())
        return own + (int(sum(self._pool.call("invalid", self.seed))) if self._pool is not None else 0)

    def close(self) -> None:
        """Stop the worker processes (nothing to do in process); the buffers stay readable."""
        pool: WorkerPool | None = getattr(self, "_pool", None)  # None too when __init__ failed before it
        if pool is not None:
            pool.close()

    def __del__(self) -> None:
        self.close()

"""Training-window KPIs: what the towns under training achieved since the last window closed.

The curriculum and the learning curves read these, window by window (one in-sim day by default). They come
from the towns the trainer is already stepping, so they cost nothing extra; the fixed-seed evaluation
scorecard (``townlet.training.evaluation``) is the yardstick for releases.

| KPI | meaning over the window |
|---|---|
| `attendance` | shifts attended / shifts resolved (attended + absent); 1.0 when none resolved |
| `lateness` | late arrivals / shifts attended |
| `need_ok_share` | agent-ticks with every need deficit below `needs.ok_threshold` |
| `self_sufficiency` | agents present all window (or until the horizon) whose needs stayed below `needs.ok_threshold` |
| `collapses` | collapses per agent-day |
| `exits` | agents leaving town per agent-day |
| `reward` | mean reward per agent-tick |

:class:`BestWindows` scores each window for the trainer's ``best.pt``: a weighted mean of KPIs (by default
self-sufficiency 0.5, need-ok share 0.25, attendance 0.25) over the last few windows together, so that one
lucky window does not win alone.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from townlet.sim.kpis import COUNTS, TICKS, KpiAccumulator, WindowStats

if TYPE_CHECKING:
    from townlet.env import BatchedTowns

KPI_NAMES = ("attendance", "lateness", "need_ok_share", "self_sufficiency", "collapses", "exits", "reward")
# A window's raw sums are a ``townlet.sim.kpis.COUNTS`` vector (summed over the towns). Checkpoints written before
# held 10 columns in this order; they are read into the new form (:func:`counts_vector`).
_OLD_COLUMNS = (
    *("arrivals", "absences", "late", "need_ok_ticks", "agent_ticks", "collapses", "exits"),
    *("sufficient", "present", "reward_sum"),
)


class TownKpis:
    """Training windows over a :class:`~townlet.env.BatchedTowns`: call :meth:`update` after every step.

    A :class:`~townlet.sim.kpis.KpiAccumulator` over the batch takes each step's counts (the change in every
    town's ``kpi_totals``, the towns' :class:`~townlet.sim.kpis.KpiTracker` totals) and each agent's worst need
    over the step (``need_peak``). Works tick by tick and in decision mode (towns may advance by different
    numbers of ticks); a town reset by autoreset has its finished episode's counts and agents banked, not lost.

    Args:
        towns: The batch.

    Attributes:
        ticks: Ticks per town since the window opened (the mean over the towns).
    """

    def __init__(self, towns: BatchedTowns) -> None:
        self.towns = towns
        ok = towns.loaded.config.needs.ok_threshold
        self.windows = KpiAccumulator(towns.n_towns, towns.capacity, ok, towns.alive)
        self._last = towns.kpi_totals.copy()

    @property
    def ticks(self) -> float:
        """Ticks per town since the window opened (the mean over the towns)."""
        return float(self.windows.counts[:, TICKS].mean())

    def update(self) -> None:
        """Fold in the step just taken."""
        towns, windows = self.towns, self.windows
        now = towns.kpi_totals
        step = now - self._last
        for i in np.flatnonzero(towns.reset_towns):  # autoreset: the finished episode's end, then the new one's start
            step[i] = towns.kpi_final[i] - self._last[i] + now[i]
            np.maximum(windows.peak[i], towns.need_peak[i], out=windows.peak[i])
            windows.end_episode(int(i))  # agents there from the window's start to the horizon were present all along
        self._last = now.copy()
        windows.add(step, towns.need_peak, towns.alive, towns.arrived)

    def close_window(self) -> np.ndarray:
        """The window's raw sums over the towns (a ``COUNTS`` vector, see :func:`window_kpis`); opens the next."""
        return self.windows.close(self.towns.alive).sum(axis=0)


def counts_vector(raw: Any) -> np.ndarray:
    """A window's raw sums as a ``COUNTS`` vector (also from a checkpoint written with the older 10 columns)."""
    raw = np.asarray(raw, dtype=np.float64)
    if raw.shape == (len(COUNTS),):
        return raw
    if raw.shape != (len(_OLD_COLUMNS),):
        raise ValueError(f"a KPI window holds {len(COUNTS)} sums, not {raw.shape}")
    out = np.zeros(len(COUNTS))
    for name, value in zip(_OLD_COLUMNS, raw.tolist(), strict=True):
        out[COUNTS.index(name)] = value
    return out


def window_kpis(raw: np.ndarray, ticks_per_day: int) -> dict[str, float]:
    """The KPIs of the module table from the raw sums of one or more :meth:`TownKpis.close_window` (added up)."""
    d = WindowStats.of(counts_vector(raw))
    agent_days = d.agent_ticks / ticks_per_day
    kpis = {
        "attendance": d.attendance,
        "lateness": d.lateness,
        "need_ok_share": d.need_ok_share,
        "self_sufficiency": d.sufficient / d.present if d.present else 0.0,
        "collapses": d.collapses / agent_days if agent_days else 0.0,
        "exits": d.exits / agent_days if agent_days else 0.0,
        "reward": d.reward_mean,
    }
    return {k: round(float(v), 4) for k, v in kpis.items()}


def window_score(kpis: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """The weighted mean of ``kpis`` by ``weights`` (KPI name -> weight; every KPI must be in ``kpis``)."""
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("score weights must add up to more than 0")
    return sum(w * float(kpis[k]) for k, w in weights.items()) / total


def score_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Check score weights (KPI names from ``KPI_NAMES``, adding up to more than 0); return them as a dict."""
    unknown = sorted(set(weights) - set(KPI_NAMES))
    if unknown:
        raise ValueError(f"unknown KPI in the score weights: {', '.join(unknown)} (known: {', '.join(KPI_NAMES)})")
    window_score({k: 0.0 for k in weights}, weights)  # refuses weights that add up to 0
    return dict(weights)


class BestWindows:
    """The best training-window score so far, for keeping the best checkpoint (``best.pt``).

    Args:
        weights: KPI name -> weight of :func:`window_score` (names from ``KPI_NAMES``).
        windows: Windows scored together: the raw sums of the last ``windows`` closed windows are added up.
        ticks_per_day: For :func:`window_kpis`.

    Attributes:
        score / step / kpis: The best score, the global step it was reached at and its KPIs (None: no window yet).
    """

    def __init__(self, weights: Mapping[str, float], windows: int, ticks_per_day: int) -> None:
        self.weights = score_weights(weights)
        self.ticks_per_day = ticks_per_day
        self.recent: deque[np.ndarray] = deque(maxlen=max(windows, 1))
        self.score = -math.inf
        self.step: int | None = None
        self.kpis: dict[str, float] | None = None

    def observe(self, raw: np.ndarray, step: int) -> tuple[float, bool]:
        """Score a closed window (its raw sums) with the ones before it; True when that beats the best so far.

        Nothing is crowned before ``windows`` windows are in: a run's first window (the towns' first morning,
        needs still low) would otherwise set a mark that no later window can beat.
        """
        self.recent.append(counts_vector(raw))
        kpis = window_kpis(np.sum(list(self.recent), axis=0), self.ticks_per_day)
        score = round(window_score(kpis, self.weights), 6)
        if len(self.recent) < (self.recent.maxlen or 1) or score <= self.score:
            return score, False
        self.score, self.step, self.kpis = score, step, kpis
        return score, True

    def reset(self) -> None:
        """Forget every window (the curriculum moved: scores of another stage do not compare)."""
        self.recent.clear()
        self.score, self.step, self.kpis = -math.inf, None, None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps for ``--resume``."""
        return {
            "score": self.score if self.step is not None else None,
            "step": self.step,
            "kpis": self.kpis,
            "recent": [r.tolist() for r in self.recent],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.reset()
        if state.get("step") is not None:
            self.score, self.step, self.kpis = float(state["score"]), int(state["step"]), dict(state["kpis"])
        self.recent.extend(counts_vector(r) for r in state.get("recent", []))


def baseline_kpis(
    config: str | None, overrides: list[str], towns: int, ticks: int, seed: int, policy: str, window: int | None = None
) -> dict[str, float]:
    """Window KPIs of ``towns`` towns run ``ticks`` ticks by the ``scripted`` or the uniform ``random`` masked policy.

    The towns run in decision mode: the random policy picks uniformly among the allowed options whenever an
    agent must decide; the scripted one is the built-in routine (action -1). With ``window`` the KPIs are
    those of ``window``-tick windows taken together (their raw sums added, as :class:`BestWindows` does), so
    they compare with training windows of that length.
    """
    from townlet.env import BatchedTowns
    from townlet.env.speed import random_masked

    if policy not in ("scripted", "random"):
        raise ValueError(f"unknown baseline policy {policy!r} (scripted or random)")
    batch = BatchedTowns(towns, config, overrides=list(overrides), autoreset=True, decisions="points")
    batch.reset(seed=seed)
    tracker = TownKpis(batch)
    rng = np.random.default_rng(seed)
    span = window or ticks
    total = np.zeros(len(COUNTS))
    done = np.zeros(towns, dtype=np.int64)
    for start in range(0, ticks, span):
        end = min(start + span, ticks)
        while (done < end).any():  # every town stops at the window's end and waits for the others
            actions = np.full((towns, batch.capacity), -1, dtype=np.int64)
            if policy == "random":
                actions = np.where(batch.alive, random_masked(rng, batch.masks), -1)
            batch.step(actions, np.where(done < end, end - done, -1))
            done += batch.ticks
            tracker.update()
        total += tracker.close_window()
    batch.close()
    return window_kpis(total, batch.loaded.config.time.ticks_per_day)

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

from townlet.sim.kpis import attendance, lateness, need_ok_share

if TYPE_CHECKING:
    from townlet.env import BatchedTowns

KPI_NAMES = ("attendance", "lateness", "need_ok_share", "self_sufficiency", "collapses", "exits", "reward")
# Raw window sums: the counters summed per town (attended, absent, late, need_ok_ticks, agent_ticks, collapses,
# exits), then agents self-sufficient over the whole window, agents present for all of it, and summed reward.
_ATTENDED, _ABSENT, _LATE, _OK, _AGENT_TICKS, _COLLAPSES, _EXITS, _SUFFICIENT, _WHOLE, _REWARD = range(10)


class TownKpis:
    """Accumulates window KPIs over a :class:`~townlet.env.BatchedTowns`; call :meth:`update` after every step.

    Works tick by tick and in decision mode (a step of several ticks: the worst need of each agent over the
    step's ticks is the batch's ``need_peak``; towns may advance by different numbers of ticks).

    Args:
        towns: The batch (episodes may reset inside it: finished episodes are banked, not lost).

    Attributes:
        ticks: Ticks per town since the window opened (the mean over the towns).
    """

    def __init__(self, towns: BatchedTowns) -> None:
        self.towns = towns
        n, c = towns.n_towns, towns.capacity
        self.ok = np.float32(towns.loaded.config.needs.ok_threshold)
        self.ticks_per_day = towns.loaded.config.time.ticks_per_day
        self._start = towns.kpi_totals.copy()
        self._banked = np.zeros_like(self._start)
        self._max_need = np.zeros((n, c), dtype=np.float32)
        self._whole = towns.alive.copy()  # the same agent has held the slot since the window opened
        self._ended = np.zeros(2)  # (self-sufficient, counted) agents whose episode ended at the horizon
        self._reward = 0.0
        self.ticks = 0.0

    def update(self) -> None:
        """Fold in the step just taken."""
        towns = self.towns
        np.maximum(self._max_need, towns.need_peak, out=self._max_need)
        for i in np.flatnonzero(towns.reset_towns):  # autoreset: bank the finished episode's totals and agents
            self._banked[i] += towns.kpi_final[i] - self._start[i]
            self._start[i] = towns.kpi_totals[i]
            # Agents there from the window's start to the horizon count as present all window.
            whole = self._whole[i]
            self._ended += (float((whole & (self._max_need[i] < self.ok)).sum()), float(whole.sum()))
            self._whole[i] = False
            self._max_need[i] = 0.0
        self._whole &= ~towns.arrived & towns.alive
        self._reward += float(towns.rewards.sum())
        self.ticks += float(towns.ticks.mean())

    def close_window(self) -> np.ndarray:
        """The window's raw sums (see :func:`window_kpis`); opens the next window."""
        now = self.towns.kpi_totals.copy()
        d = (self._banked + now - self._start).sum(axis=0)
        whole = self._whole & self.towns.alive
        sufficient = float((self._max_need[whole] < self.ok).sum()) + self._ended[0]
        raw = np.concatenate([d, [sufficient, float(whole.sum()) + self._ended[1], self._reward]])
        self._start = now
        self._banked[:] = 0.0
        self._max_need[:] = 0.0
        self._whole = self.towns.alive.copy()
        self._ended[:] = 0.0
        self._reward = 0.0
        self.ticks = 0.0
        return raw


def window_kpis(raw: np.ndarray, ticks_per_day: int) -> dict[str, float]:
    """The KPIs of the module table from the raw sums of one or more :meth:`TownKpis.close_window` (added up)."""
    d = raw
    agent_days = d[_AGENT_TICKS] / ticks_per_day
    kpis = {
        "attendance": attendance(d[_ATTENDED], d[_ABSENT]),
        "lateness": lateness(d[_LATE], d[_ATTENDED]),
        "need_ok_share": need_ok_share(d[_OK], d[_AGENT_TICKS]),
        "self_sufficiency": d[_SUFFICIENT] / d[_WHOLE] if d[_WHOLE] else 0.0,
        "collapses": d[_COLLAPSES] / agent_days if agent_days else 0.0,
        "exits": d[_EXITS] / agent_days if agent_days else 0.0,
        "reward": d[_REWARD] / d[_AGENT_TICKS] if d[_AGENT_TICKS] else 0.0,
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
        self.recent.append(np.asarray(raw, dtype=np.float64))
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
        self.recent.extend(np.asarray(r, dtype=np.float64) for r in state.get("recent", []))


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
    total = np.zeros(10)
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

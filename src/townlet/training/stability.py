"""The stability monitor: rolling windows over a running town and the canaries that say a policy misbehaves.

Every ``stability.window_ticks`` ticks (1,000 by default: one in-sim day) a window closes and is checked:

| canary | fires when |
|---|---|
| `lateness_spike` | lateness > `lateness_factor` (2) x the baseline's (floored at `lateness_floor`; `min_arrivals`) |
| `starvation` | more than `starvation_max` (0) hunger collapses in the window |
| `option_thrash` | over `thrash_rate` (25%) of option starts abandon one younger than `thrash_ticks` |
| `reward_collapse` | mean reward per agent-tick below the baseline's by `reward_drop` stds (and `reward_margin`) |

The baseline is the scripted routine's windows on the same config (:meth:`Baseline.measure`). A window with
no canary *passes*. Each closed window is logged (``stability.window``), a firing canary also as an
``alert`` event in the town's event list (detail ``canary:<name>``), so telemetry and viewers see it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from townlet.config.loader import LoadedConfig
from townlet.config.models import StabilityConfig
from townlet.logs import log_event
from townlet.sim.kpis import KpiMeter, WindowStats
from townlet.sim.simulation import Simulation
from townlet.training.evaluation import build_sim
from townlet.world.events import EventKind

LOG = logging.getLogger("townlet.stability")
CANARIES = ("lateness_spike", "starvation", "option_thrash", "reward_collapse")


@dataclass
class Baseline:
    """What normal looks like: the scripted routine's window KPIs.

    Attributes:
        lateness: Late arrivals / arrivals over the baseline windows.
        reward_mean: Mean reward per agent-tick.
        reward_std: Standard deviation of the window reward means.
        windows: Windows measured.
    """

    lateness: float
    reward_mean: float
    reward_std: float = 0.0
    windows: int = 0

    @classmethod
    def from_windows(cls, windows: list[WindowStats]) -> Baseline:
        """Summarise closed windows."""
        total = WindowStats()
        for w in windows:
            total = total.merge(w)
        means = [w.reward_mean for w in windows]
        return cls(
            round(total.lateness, 6),
            round(total.reward_mean, 6),
            round(float(np.std(means)), 6) if len(means) > 1 else 0.0,
            len(windows),
        )

    @classmethod
    def measure(cls, loaded: LoadedConfig, seed: int, windows: int | None = None) -> Baseline:
        """Run the scripted routine for ``windows`` windows (``stability.baseline_windows``) and summarise."""
        cfg = loaded.config.stability
        windows = windows or cfg.baseline_windows
        sim = build_sim(loaded, seed, "scripted")
        meter = KpiMeter(sim, span=cfg.window_ticks)
        for _ in range(windows * cfg.window_ticks):
            sim.step()
        return cls.from_windows(meter.spans)


@dataclass
class Canary:
    """A canary that fired: which, the value seen, the limit it crossed, and a line for humans."""

    name: str
    value: float
    limit: float
    message: str


@dataclass
class WindowReport:
    """One closed window of one policy.

    Attributes:
        index: Window number (0 first).
        start / end: First and last tick.
        kpis: The window's KPIs.
        canaries: Canaries that fired (empty: the window passed).
    """

    index: int
    start: int
    end: int
    kpis: dict[str, float]
    canaries: list[Canary] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No canary fired."""
        return not self.canaries

    @property
    def reason(self) -> str:
        """The canaries' messages joined (empty when it passed)."""
        return "; ".join(c.message for c in self.canaries)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {**asdict(self), "passed": self.passed}


def check(stats: WindowStats, baseline: Baseline, cfg: StabilityConfig) -> list[Canary]:
    """The canaries a window's stats set off."""
    fired = []
    expected = max(baseline.lateness, cfg.lateness_floor)
    limit = cfg.lateness_factor * expected
    if stats.arrivals >= cfg.min_arrivals and stats.lateness > limit:
        fired.append(
            Canary(
                "lateness_spike",
                round(stats.lateness, 4),
                round(limit, 4),
                f"lateness spike: {stats.lateness:.0%} of arrivals late, over {cfg.lateness_factor:g}x "
                f"the baseline {expected:.0%}",
            )
        )
    if stats.collapses > cfg.starvation_max:
        fired.append(
            Canary(
                "starvation",
                float(stats.collapses),
                float(cfg.starvation_max),
                f"starvation: {stats.collapses} collapse(s) in the window",
            )
        )
    if stats.option_starts >= cfg.min_option_starts and stats.thrash_rate > cfg.thrash_rate:
        fired.append(
            Canary(
                "option_thrash",
                round(stats.thrash_rate, 4),
                cfg.thrash_rate,
                f"option thrash: {stats.thrash_rate:.0%} of option starts abandoned an option under "
                f"{cfg.thrash_ticks} ticks old",
            )
        )
    floor = baseline.reward_mean - max(cfg.reward_drop * baseline.reward_std, cfg.reward_margin)
    if stats.agent_ticks and stats.reward_mean < floor:
        fired.append(
            Canary(
                "reward_collapse",
                round(stats.reward_mean, 6),
                round(floor, 6),
                f"reward collapse: mean {stats.reward_mean:.4f} per agent-tick, below {floor:.4f}",
            )
        )
    return fired


def training_canaries(
    kpis: dict[str, float], cfg: StabilityConfig, baseline: dict[str, float] | None = None
) -> dict[str, str]:
    """The canaries a training window's KPIs (:func:`~townlet.training.windows.window_kpis`) can judge.

    Per canary ``ok``, ``fired`` or ``n/a``: training windows count collapses and lateness as rates, not
    option starts, so ``option_thrash`` is not judged there, and ``reward_collapse`` only against a measured
    scripted ``baseline`` (the trainer's ``baselines``); lateness is judged against the baseline's lateness
    (floored at ``lateness_floor``).
    """
    expected = max(float((baseline or {}).get("lateness", 0.0)), cfg.lateness_floor)
    out = {
        "lateness_spike": "fired" if kpis.get("lateness", 0.0) > cfg.lateness_factor * expected else "ok",
        "starvation": "fired" if kpis.get("collapses", 0.0) > 0 and cfg.starvation_max == 0 else "ok",
        "option_thrash": "n/a",
        "reward_collapse": "n/a",
    }
    if baseline and "reward" in baseline and "reward" in kpis:
        out["reward_collapse"] = "fired" if kpis["reward"] < baseline["reward"] - cfg.reward_margin else "ok"
    return out


class StabilityMonitor:
    """Rolling windows over one simulation, checked against a baseline as they close.

    Args:
        sim: The town to watch (a timed phase is added).
        baseline: What normal looks like.
        cfg: ``stability`` (the town's own config when None).
        label: Which policy this town runs (``release``, ``shadow``, ``live``): in logs and alerts.
        on_window: Called with each :class:`WindowReport`.
        promotion_state: Returns the ``promotion_state`` field of the ``stability.window`` log line (the release,
            a pin, the driving policy; see :meth:`~townlet.training.registry.PolicyRegistry.state`).

    Attributes:
        reports: Every closed window, oldest first.
    """

    def __init__(
        self,
        sim: Simulation,
        baseline: Baseline,
        cfg: StabilityConfig | None = None,
        label: str = "release",
        on_window: Callable[[WindowReport], None] | None = None,
        promotion_state: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.sim = sim
        self.promotion_state = promotion_state
        self.cfg = cfg or sim.config.stability
        self.baseline = baseline
        self.label = label
        self.on_window = on_window
        self.reports: list[WindowReport] = []
        self.meter = KpiMeter(sim, span=self.cfg.window_ticks, on_span=self._closed, phase=f"stability_{label}")

    @property
    def streak(self) -> int:
        """Consecutive passing windows up to the latest."""
        n = 0
        for report in reversed(self.reports):
            if not report.passed:
                break
            n += 1
        return n

    def _closed(self, stats: WindowStats) -> None:
        report = WindowReport(
            len(self.reports),
            stats.start,
            stats.start + stats.ticks - 1,
            stats.kpis(),
            check(stats, self.baseline, self.cfg),
        )
        self.reports.append(report)
        world = self.sim.world
        for canary in report.canaries:
            world.emit(EventKind.ALERT, value=canary.value, detail=f"canary:{canary.name}")
        log_event(
            LOG,
            "stability.window",
            world.tick,
            logging.WARNING if report.canaries else logging.INFO,
            label=self.label,
            window=report.index,
            passed=report.passed,
            canaries=[c.name for c in report.canaries],
            **report.kpis,
            promotion_state=self.promotion_state() if self.promotion_state else None,
        )
        if self.on_window is not None:
            self.on_window(report)

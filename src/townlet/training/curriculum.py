"""The curriculum: stages M0 -> M5 from the config's ``stages``, moved through by hand or by KPI bands.

Each stage is a set of feature flags (``stages.M2.features``) and, optionally, the bands that end it
(``stages.M2.advance_when: {attendance: [0.8, 1.0], ...}``, KPI names from
:mod:`townlet.training.windows`). In ``auto`` mode the trainer moves to the next stage once every band has
held for ``windows`` consecutive windows; a stage without bands (or ``manual`` mode) is left only by hand:
resume the run with ``townlet train --resume DIR --stage M3``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from townlet.config.errors import ConfigError
from townlet.config.loader import LoadedConfig
from townlet.training.windows import KPI_NAMES


@dataclass
class Curriculum:
    """Where training stands in the stage list and how close it is to moving on.

    Attributes:
        stages: Stage names in order (the config's ``stages``, M0 first).
        bands: Stage -> KPI -> ``(low, high)``.
        stage: The current stage.
        auto: Move on by the bands (else only by hand).
        windows: Consecutive passing windows needed.
        streak: Passing windows in a row so far in this stage.
        history: ``(global_step, stage)`` of every stage entered.
    """

    stages: list[str]
    bands: dict[str, dict[str, tuple[float, float]]]
    stage: str
    auto: bool = True
    windows: int = 2
    streak: int = 0
    history: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def from_config(cls, loaded: LoadedConfig, stage: str, auto: bool = True, windows: int = 2) -> Curriculum:
        """Read the stage list and bands from a config; ``stage`` is where training starts."""
        cfg = loaded.config
        if stage not in cfg.stages:
            known = ", ".join(cfg.stages) or "none defined"
            raise ConfigError(str(loaded.source), "stage", f"stage {stage!r} is not defined in stages ({known})")
        bands = {}
        for name, st in cfg.stages.items():
            for kpi in st.advance_when:
                if kpi not in KPI_NAMES:
                    raise ConfigError(
                        str(loaded.source),
                        f"stages.{name}.advance_when.{kpi}",
                        f"unknown training KPI (one of {', '.join(KPI_NAMES)})",
                    )
            bands[name] = {k: (float(lo), float(hi)) for k, (lo, hi) in st.advance_when.items()}
        return cls(list(cfg.stages), bands, stage, auto, windows)

    @property
    def final(self) -> bool:
        """Whether the current stage is the last one."""
        return self.stages.index(self.stage) == len(self.stages) - 1

    def holds(self, kpis: dict[str, float]) -> bool:
        """Whether every band of the current stage holds for these window KPIs (False without bands)."""
        bands = self.bands.get(self.stage, {})
        return bool(bands) and all(lo <= kpis.get(k, float("nan")) <= hi for k, (lo, hi) in bands.items())

    def observe(self, kpis: dict[str, float], global_step: int) -> str | None:
        """Count a closed window; returns the next stage's name when training should move there now."""
        if not self.auto or self.final:
            return None
        self.streak = self.streak + 1 if self.holds(kpis) else 0
        if self.streak < self.windows:
            return None
        return self.advance(global_step)

    def advance(self, global_step: int, to: str | None = None) -> str:
        """Move to ``to`` (default: the next stage) and start counting afresh."""
        if to is None:
            to = self.stages[min(self.stages.index(self.stage) + 1, len(self.stages) - 1)]
        if to not in self.stages:
            raise ValueError(f"unknown stage {to!r} (one of {', '.join(self.stages)})")
        self.stage = to
        self.streak = 0
        self.history.append((global_step, to))
        return to

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps to resume the curriculum."""
        return {
            "stage": self.stage,
            "streak": self.streak,
            "history": [list(h) for h in self.history],
            "auto": self.auto,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.stage = state["stage"]
        self.streak = int(state["streak"])
        self.history = [(int(s), str(n)) for s, n in state["history"]]

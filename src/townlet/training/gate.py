"""The A/B gate: a candidate's scorecard against a baseline's, KPI by KPI, social KPIs only where they apply.

A KPI fails when the candidate is worse than the baseline by more than ``max(relative * |baseline|,
absolute)`` (``evaluation.gate``). The social KPIs (``gate.social_kpis``: relationship formation, conflict
escalation) are judged only on the scenarios whose ``features.social_rewards`` is at least ``gate.social_from``
(C1): before that stage no policy is trained to be social, so a clone that rarely socialises is no regression.
:func:`gate` compares two scorecards; :func:`gate_evaluations` compares two :class:`Evaluation` results and
applies the stage rule; :func:`variant_gate` runs two policies on the same scenarios and gates them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from townlet.config.loader import load_config
from townlet.config.models import GateConfig
from townlet.rewards.terms import STAGE_LEVEL
from townlet.training.evaluation import Evaluation, Policy, average, evaluate


@dataclass
class GateResult:
    """A candidate against a baseline.

    Attributes:
        passed: No KPI is worse beyond its tolerance.
        checks: Per KPI: ``kpi``, ``baseline``, ``candidate``, ``limit`` and ``ok``.
    """

    passed: bool
    checks: list[dict[str, Any]]

    @property
    def failures(self) -> list[str]:
        """Human lines for the KPIs that failed."""
        return [
            f"{c['kpi']} {c['candidate']} vs baseline {c['baseline']} (limit {c['limit']})"
            for c in self.checks
            if not c["ok"]
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {"passed": self.passed, "checks": self.checks, "failures": self.failures}


def gate(
    baseline: Mapping[str, Any], candidate: Mapping[str, Any], cfg: GateConfig | None = None, social: bool = True
) -> GateResult:
    """The A/B gate on two scorecards: no KPI may be worse than the baseline's beyond its tolerance.

    Args:
        baseline: The baseline's scorecard (KPIs missing from either scorecard are skipped).
        candidate: The candidate's scorecard.
        cfg: The gate's KPIs and tolerances (``evaluation.gate``).
        social: Also judge ``cfg.social_kpis`` (the caller knows the scorecards come from a social stage).
    """
    cfg = cfg or GateConfig()
    kpis = [(k, 1.0) for k in cfg.higher_better] + [(k, -1.0) for k in cfg.lower_better]
    if not social:
        kpis = [(k, sign) for k, sign in kpis if k not in cfg.social_kpis]
    return GateResult(*_judge(baseline, candidate, cfg, kpis))


def _judge(
    baseline: Mapping[str, Any], candidate: Mapping[str, Any], cfg: GateConfig, kpis: list[tuple[str, float]]
) -> tuple[bool, list[dict[str, Any]]]:
    checks = []
    for kpi, sign in kpis:
        if kpi not in baseline or kpi not in candidate:
            continue
        b, c = float(baseline[kpi]), float(candidate[kpi])
        slack = max(cfg.relative * abs(b), cfg.absolute)
        limit = b - sign * slack
        ok = (c - limit) * sign >= -1e-12
        checks.append({"kpi": kpi, "baseline": b, "candidate": c, "limit": round(limit, 6), "ok": bool(ok)})
    return all(c["ok"] for c in checks), checks


def social_scorecard(evaluation: Evaluation, cfg: GateConfig) -> dict[str, Any] | None:
    """The averaged scorecard of the scenarios from ``cfg.social_from`` on (None when there are none)."""
    level = STAGE_LEVEL[cfg.social_from]
    cards = [s["scorecard"] for s in evaluation.scenarios if STAGE_LEVEL[s.get("social_rewards", "OFF")] >= level]
    return average(cards) if cards else None


def gate_evaluations(baseline: Evaluation, candidate: Evaluation, cfg: GateConfig | None = None) -> GateResult:
    """The A/B gate on two evaluations of the same scenarios.

    Every KPI but the social ones is judged on the averaged scorecards; the social KPIs on the average of the
    scenarios from stage ``cfg.social_from`` on (their checks carry ``"stages": "C1+"``), if there are any.
    """
    cfg = cfg or GateConfig()
    result = gate(baseline.scorecard, candidate.scorecard, cfg, social=False)
    base, cand = social_scorecard(baseline, cfg), social_scorecard(candidate, cfg)
    if base is None or cand is None:
        return result
    social = [(k, 1.0) for k in cfg.higher_better if k in cfg.social_kpis]
    social += [(k, -1.0) for k in cfg.lower_better if k in cfg.social_kpis]
    passed, checks = _judge(base, cand, cfg, social)
    for check in checks:
        check["stages"] = f"{cfg.social_from}+"
    return GateResult(result.passed and passed, result.checks + checks)


def variant_gate(
    baseline: Policy, candidate: Policy, config: str | Path | None = None, overrides: Iterable[str] = (), **kwargs: Any
) -> tuple[Evaluation, Evaluation, GateResult]:
    """Evaluate two policies (e.g. trained on two observation variants) on the same scenarios and gate them."""
    base = evaluate(baseline, config, overrides, **kwargs)
    cand = evaluate(candidate, config, overrides, **kwargs)
    cfg = load_config(config, list(overrides)).config.evaluation.gate
    return base, cand, gate_evaluations(base, cand, cfg)

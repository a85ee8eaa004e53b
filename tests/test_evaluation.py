"""The evaluation suite: the KPI meter, the scorecard, fixed-seed scenarios per stage, and the A/B gate."""

from __future__ import annotations

import json

import pytest

from townlet.cli.main import main
from townlet.config import load_config
from townlet.config.models import GateConfig
from townlet.training.evaluation import (
    Evaluation,
    KpiMeter,
    WindowStats,
    average,
    evaluate,
    run_scorecard,
    scorecard,
)
from townlet.training.gate import gate, gate_evaluations, variant_gate
from training_support import tiny_checkpoint

CONTRACT = ("attendance", "lateness", "collapses", "need_ok_share", "self_sufficiency", "relationship_formation")


def test_scripted_scorecard_of_a_day_beats_the_random_policy() -> None:
    """One fixed-seed day: the routine attends every shift with agents self-sufficient; random does far worse."""
    loaded = load_config()
    scripted = run_scorecard(loaded, "scripted", seed=3, ticks=1000)
    random = run_scorecard(loaded, "random", seed=3, ticks=1000)
    for key in (*CONTRACT, "starvation", "tenure", "conflict_escalation", "option_switch_rate", "reward_mean"):
        assert key in scripted
    assert scripted["attendance"] == 1.0 and scripted["collapses"] == 0 and scripted["self_sufficiency"] >= 0.75
    assert scripted["agent_days"] == 8 and scripted["ticks"] == 1000 and scripted["tenure"] == pytest.approx(1.0)
    assert random["attendance"] < 0.8 and random["self_sufficiency"] < scripted["self_sufficiency"] - 0.3
    assert random["option_thrash_rate"] > scripted["option_thrash_rate"]


def test_meter_spans_add_up_to_the_run_totals(make_sim) -> None:
    """Four 250-tick spans of one day hold every arrival, absence and agent-tick the KPI tracker counted."""
    sim = make_sim(seed=5)
    meter = KpiMeter(sim, span=250)
    for _ in range(1000):
        sim.step()
    assert len(meter.spans) == 4 and [s.start for s in meter.spans] == [0, 250, 500, 750]
    total = meter.total()
    report = sim.kpis.report(sim.world)
    assert total.arrivals == report["shifts_attended"] and total.absences == report["shifts_absent"]
    assert total.agent_ticks == sim.kpis.agent_ticks and total.ticks == 1000
    assert total.need_ok_share == pytest.approx(report["need_ok_share"], abs=1e-4)


def test_self_sufficiency_counts_agents_whose_needs_stayed_ok_all_span(make_sim) -> None:
    """An agent pushed past the ok threshold once in a span is not self-sufficient in it; the others are."""
    sim = make_sim(seed=1)
    meter = KpiMeter(sim, span=100)
    for _ in range(50):
        sim.step()
    sim.world.set_need(3, "hygiene", 0.8)
    for _ in range(50):
        sim.step()
    span = meter.spans[0]
    assert span.present == 8 and span.sufficient == 7 and span.self_sufficiency == pytest.approx(7 / 8)


def test_window_stats_rates_and_merge() -> None:
    """Rates are ratios of the counts (with safe defaults when empty); merging adds counts."""
    empty = WindowStats()
    assert (empty.attendance, empty.lateness, empty.need_ok_share, empty.switch_rate) == (1.0, 0.0, 1.0, 0.0)
    a = WindowStats(start=0, ticks=10, arrivals=4, late=1, absences=1, option_starts=10, switches=3, thrash=1)
    b = WindowStats(start=10, ticks=10, arrivals=4, late=3, absences=0, option_starts=10, switches=1, thrash=0)
    both = a.merge(b)
    assert both.start == 0 and both.ticks == 20
    assert both.attendance == pytest.approx(8 / 9) and both.lateness == pytest.approx(0.5)
    assert both.switch_rate == pytest.approx(0.2) and both.thrash_rate == pytest.approx(0.05)


def test_relationship_and_conflict_shares_read_the_ties(make_sim) -> None:
    """relationship_formation counts agents with a familiar, non-hostile tie; conflict_escalation a rivalry."""
    sim = make_sim(seed=0)
    meter = KpiMeter(sim)
    sim.step()
    rel = sim.world.relationships
    rel.set_tie(sim.world, 0, 1, (0.3, 0.4, 0.0))
    rel.set_tie(sim.world, 2, 3, (-0.2, 0.5, 0.6))
    card = scorecard(sim, meter)
    assert card["relationship_formation"] == pytest.approx(1 / 8)
    assert card["conflict_escalation"] == pytest.approx(1 / 8)


def test_evaluate_runs_each_stage_on_every_seed_and_averages() -> None:
    """Fixed-seed scenarios per stage: two stages x two seeds, rates averaged and counts summed."""
    result = evaluate("scripted", stages=["M0", "M1"], seeds=[1, 2], days=0.3)
    assert [(s["stage"], s["seed"]) for s in result.scenarios] == [("M0", 1), ("M0", 2), ("M1", 1), ("M1", 2)]
    cards = [s["scorecard"] for s in result.scenarios]
    assert result.scorecard["ticks"] == 4 * 300
    assert result.scorecard["need_ok_share"] == pytest.approx(sum(c["need_ok_share"] for c in cards) / 4, abs=1e-6)
    again = evaluate("scripted", stages=["M0", "M1"], seeds=[1, 2], days=0.3)
    assert {k: v for k, v in again.scorecard.items() if k != "steps_per_s"} == {
        k: v for k, v in result.scorecard.items() if k != "steps_per_s"
    }, "fixed seeds: the same scorecard"


def test_the_suite_covers_every_configured_stage() -> None:
    """stages=None runs evaluation.stages, or every stage the config defines."""
    result = evaluate("scripted", stages=None, seeds=[1], days=0.05)
    assert [s["stage"] for s in result.scenarios] == ["M0", "M1", "M2", "M3", "M4", "M5"]
    picked = evaluate("scripted", overrides=["evaluation.stages=[M2,M4]"], stages=None, seeds=[1], days=0.05)
    assert [s["stage"] for s in picked.scenarios] == ["M2", "M4"]


def test_gate_fails_a_kpi_worse_than_the_tolerance_and_passes_within_it() -> None:
    """The A/B gate allows max(relative x baseline, absolute) worse per KPI, in the KPI's own direction."""
    cfg = GateConfig(relative=0.1, absolute=0.02)
    base = {"attendance": 0.9, "lateness": 0.1, "starvation": 0.0, "self_sufficiency": 0.5}
    assert gate(base, {**base, "attendance": 0.82}).passed
    failed = gate(base, {**base, "attendance": 0.80, "lateness": 0.13}, cfg)
    assert not failed.passed
    assert {c["kpi"] for c in failed.checks if not c["ok"]} == {"attendance", "lateness"}
    assert "attendance 0.8 vs baseline 0.9 (limit 0.81)" in failed.failures[0]
    assert (
        gate(base, {**base, "starvation": 0.02}, cfg).passed
        and not gate(base, {**base, "starvation": 0.03}, cfg).passed
    )
    assert gate(base, {**base, "self_sufficiency": 0.9}, cfg).passed, "better is always fine"


def test_social_kpis_gate_only_the_scenarios_from_stage_c1_on() -> None:
    """A clone that rarely socialises passes on M0-M3 scenarios; on C1+ scenarios relationship_formation gates."""

    def scenario(stage: str, social: str, formation: float) -> dict:
        card = {
            "attendance": 1.0,
            "self_sufficiency": 0.8,
            "relationship_formation": formation,
            "conflict_escalation": 0.1,
        }
        return {"stage": stage, "seed": 1, "social_rewards": social, "scorecard": card}

    def ev(*scenarios: dict) -> Evaluation:
        return Evaluation("p", average([s["scorecard"] for s in scenarios]), list(scenarios), 1.0)

    release = ev(scenario("M0", "OFF", 0.6), scenario("M3", "OFF", 0.6))
    shy = ev(scenario("M0", "OFF", 0.2), scenario("M3", "OFF", 0.3))
    assert not gate(release.scorecard, shy.scorecard).passed, "the plain gate judges every KPI it is given"
    early = gate_evaluations(release, shy)
    assert early.passed and "relationship_formation" not in {c["kpi"] for c in early.checks}
    release_c = ev(scenario("M3", "OFF", 0.6), scenario("M4", "C1", 0.6))
    shy_c = ev(scenario("M3", "OFF", 0.2), scenario("M4", "C1", 0.3))
    late = gate_evaluations(release_c, shy_c)
    assert not late.passed and late.failures == ["relationship_formation 0.3 vs baseline 0.6 (limit 0.54)"]
    assert {c["kpi"]: c.get("stages") for c in late.checks}["conflict_escalation"] == "C1+"
    friendly = ev(scenario("M3", "OFF", 0.2), scenario("M4", "C1", 0.6))
    assert gate_evaluations(release_c, friendly).passed, "only the C1+ scenarios count for the social KPIs"
    later = GateConfig(social_from="C3")
    assert gate_evaluations(release_c, shy_c, later).passed


def test_average_sums_counts_and_means_rates() -> None:
    """Averaging scorecards: counts add up, rates are means."""
    out = average([{"collapses": 1, "attendance": 1.0, "ticks": 10}, {"collapses": 2, "attendance": 0.5, "ticks": 10}])
    assert out == {"collapses": 3, "attendance": 0.75, "ticks": 20}


def test_variant_ab_gate_compares_policies_of_two_observation_variants(tmp_path) -> None:
    """Two policies reading different observation variants are judged on the same fixed-seed scenarios."""
    hybrid = tiny_checkpoint(tmp_path / "hybrid.pt", "hybrid")
    compact = tiny_checkpoint(tmp_path / "compact.pt", "compact")
    base, cand, result = variant_gate(hybrid, compact, seeds=[3], days=0.2)
    assert [s["seed"] for s in base.scenarios] == [s["seed"] for s in cand.scenarios] == [3]
    assert base.policy != cand.policy
    assert {c["kpi"] for c in result.checks} >= {"attendance", "lateness", "self_sufficiency"}
    assert result.passed == all(c["ok"] for c in result.checks)


def test_evaluate_command_prints_the_scorecard_contract(capsys) -> None:
    """Townlet evaluate --policy scripted --json prints one object with the contract's KPI keys at the top."""
    assert main(["evaluate", "--policy", "scripted", "--days", "0.5", "--seed", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in CONTRACT:
        assert isinstance(out[key], int | float)
    assert out["policy"] == "scripted" and out["seeds"] == [3] and out["days"] == 0.5
    assert len(out["scenarios"]) == 1 and out["scenarios"][0]["scorecard"]["ticks"] == 500


def test_evaluate_command_with_a_checkpoint_and_a_failing_gate(tmp_path, capsys) -> None:
    """A checkpoint is evaluated by its policy hash; --baseline gates it and exits 1 when the gate fails."""
    path = tiny_checkpoint(tmp_path / "p.pt")
    assert main(["evaluate", "--checkpoint", str(path), "--days", "0.3", "--seed", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["policy"]) == 16 and "self_sufficiency" in out
    code = main(["evaluate", "--policy", "random", "--baseline", "scripted", "--days", "1", "--seed", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and not out["gate"]["passed"] and out["baseline"]["policy"] == "scripted"
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")]) == 2


def test_scripted_sim_never_imports_torch() -> None:
    """Evaluating the built-in policies needs no torch (the simulation runs without it)."""
    import subprocess
    import sys

    code = (
        "import sys; from townlet.training.evaluation import evaluate; "
        "evaluate('scripted', seeds=[1], days=0.05); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

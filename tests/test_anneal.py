"""The anneal: 80/20 scripted/learned down to 0 scripted, frozen when a KPI drops more than 30% below scripted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from townlet.cli.main import main
from townlet.config.models import AnnealConfig
from townlet.policy.options import Option
from townlet.sim import Simulation
from townlet.training.anneal import AnnealedActor, AnnealSchedule, run_anneal, scripted_slots
from training_support import Fixed, tiny_checkpoint

BASE = {"attendance": 1.0, "need_ok_share": 0.99, "self_sufficiency": 0.9}


def scaled(factor: float) -> dict[str, float]:
    return {k: v * factor for k, v in BASE.items()}


def test_schedule_hands_over_step_by_step_and_completes_when_kpis_hold() -> None:
    """With KPIs as good as scripted, the share goes 0.8 -> 0.6 -> 0.4 -> 0.2 -> 0.0 and completes at 0."""
    schedule = AnnealSchedule(AnnealConfig(), BASE)
    shares = []
    while not schedule.finished:
        shares.append(schedule.scripted_share)
        schedule.observe(BASE)
    assert shares == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])
    assert schedule.completed and not schedule.frozen and schedule.scripted_share == 0.0
    assert [h.decision for h in schedule.history] == ["advance"] * 4 + ["complete"]


def test_a_forced_kpi_drop_over_30_percent_freezes_the_anneal() -> None:
    """A window 35% below scripted freezes the anneal at the last share that held; it moves no more."""
    schedule = AnnealSchedule(AnnealConfig(), BASE)
    schedule.observe(BASE)  # 0.8 held
    schedule.observe(scaled(0.9))  # 0.6 held (10% down)
    assert schedule.scripted_share == pytest.approx(0.4)
    decision = schedule.observe({**BASE, "attendance": 0.65})  # at 0.4: attendance 35% below
    assert decision == "freeze" and schedule.frozen and not schedule.completed
    assert schedule.scripted_share == pytest.approx(0.6), "back to the last share whose KPIs held"
    assert "attendance fell 35% below scripted" in schedule.reason and "at 40% scripted" in schedule.reason
    assert schedule.observe(BASE) == "frozen" and schedule.scripted_share == pytest.approx(0.6)


def test_schedule_state_survives_a_round_trip() -> None:
    """to_dict/from_dict restore the share, the last share that held and the history (a resumed run)."""
    schedule = AnnealSchedule(AnnealConfig(), BASE)
    schedule.observe(BASE)
    schedule.observe(BASE)
    restored = AnnealSchedule.from_dict(AnnealConfig(), json.loads(json.dumps(schedule.to_dict())))
    assert restored.scripted_share == pytest.approx(0.4) and len(restored.history) == 2
    assert restored.observe(scaled(0.5)) == "freeze" and restored.scripted_share == pytest.approx(0.6)


def test_a_drop_of_exactly_30_percent_does_not_freeze() -> None:
    """The rule is 'more than' max_drop: 30% down still advances; the first window failing freezes at the start."""
    schedule = AnnealSchedule(AnnealConfig(), BASE)
    assert schedule.observe(scaled(0.7)) == "advance"
    first = AnnealSchedule(AnnealConfig(), BASE)
    assert first.observe(scaled(0.5)) == "freeze" and first.scripted_share == pytest.approx(0.8)


def test_schedule_refuses_a_baseline_without_its_kpis() -> None:
    """The baseline must hold every watched KPI."""
    with pytest.raises(ValueError, match="self_sufficiency"):
        AnnealSchedule(AnnealConfig(), {"attendance": 1.0, "need_ok_share": 1.0})


def test_scripted_slots_pick_that_share_of_living_agents_and_shrink_as_a_subset() -> None:
    """round(share * living) living slots are scripted; a smaller share keeps a subset of them (no reshuffle)."""
    alive = np.zeros(16, dtype=bool)
    alive[[0, 1, 2, 3, 5, 8, 9, 11, 14]] = True
    previous = None
    for share in (0.8, 0.6, 0.4, 0.2, 0.0):
        chosen = scripted_slots(alive, share)
        assert chosen.sum() == round(share * 9) and not (chosen & ~alive).any()
        if previous is not None:
            assert not (chosen & ~previous).any()
        previous = chosen


def test_annealed_actor_leaves_the_scripted_share_to_the_built_in_routine() -> None:
    """The actor returns -1 (the routine) for the scripted slots and the learned choice for the others."""
    sim = Simulation(seed=1)
    actor = AnnealedActor(Fixed(Option.IDLE), 0.75)
    actions = actor.act(sim)
    live = sim.world.agents.slots()
    assert (actions[live] == -1).sum() == 6 and (actions[live] == Option.IDLE).sum() == 2
    actor.set_scripted_share(0.0)
    assert (actor.act(sim)[live] == Option.IDLE).all()


def test_run_anneal_freezes_when_a_learned_policy_stops_going_to_work() -> None:
    """A policy that only idles costs attendance as it takes agents over: the anneal freezes with that reason."""
    short_days = ["time.ticks_per_day=400", "imitation.anneal.window_ticks=400", "imitation.anneal.kpis=[attendance]"]
    result = run_anneal(Fixed(Option.IDLE), overrides=short_days, seeds=[4], baseline={"attendance": 1.0})
    assert result.outcome == "frozen"
    assert result.reason.startswith("attendance fell")
    frozen_at = result.history[-1]
    assert frozen_at["decision"] == "freeze" and frozen_at["drops"]["attendance"] > 0.3
    assert all(h["drops"]["attendance"] <= 0.3 for h in result.history[:-1])
    assert result.scripted_share == pytest.approx(
        result.history[-2]["scripted_share"] if len(result.history) > 1 else 0.8
    )


def test_anneal_command_reports_the_outcome(tmp_path, capsys) -> None:
    """Townlet anneal --json runs the hand-over for a checkpoint and prints outcome, share and windows."""
    path = tiny_checkpoint(tmp_path / "p.pt")
    code = main(
        [
            "anneal",
            str(path),
            "--seed",
            "2",
            "--set",
            "imitation.anneal.window_ticks=200",
            "--set",
            "imitation.anneal.step=0.4",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["outcome"] in ("completed", "frozen")
    assert out["history"][0]["scripted_share"] == pytest.approx(0.8)
    assert set(out["baseline"]) == {"attendance", "need_ok_share", "self_sufficiency"}
    assert main(["anneal", str(tmp_path / "nope.pt")]) == 2

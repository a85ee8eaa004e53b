"""KPI views keep their numbers: one definition per KPI (townlet.sim.kpis) serves every view, values unchanged.

The pinned values were measured at 277a22e, before the views shared the accumulator and the definitions. The
telemetry windows' need-ok share was pinned at 0.944 against the meter's 0.9435 for ticks 1200-1599: this test
called the encoder after each tick instead of from a phase of it, as the publisher does, so its windows were a
tick early (1199-1598). Encoded from a phase, both views count the same ticks and agree.
"""

from __future__ import annotations

import numpy as np

from townlet.config.loader import load_config
from townlet.env import BatchedTowns
from townlet.sim import Simulation
from townlet.sim.kpis import KpiMeter, attendance, lateness, need_ok_share
from townlet.telemetry.encoder import TelemetryEncoder
from townlet.training.windows import TownKpis, window_kpis

BEFORE = {
    "meter": [
        {
            "attendance": 1.0,
            "collapses": 0,
            "lateness": 0.0,
            "need_ok_share": 1.0,
            "option_switch_rate": 0.0435,
            "option_thrash_rate": 0.0,
            "reward_mean": 0.006878,
            "self_sufficiency": 1.0,
        },
        {
            "attendance": 0.6667,
            "collapses": 0,
            "lateness": 0.5,
            "need_ok_share": 1.0,
            "option_switch_rate": 0.1875,
            "option_thrash_rate": 0.0,
            "reward_mean": 0.012351,
            "self_sufficiency": 1.0,
        },
        {
            "attendance": 1.0,
            "collapses": 0,
            "lateness": 0.0,
            "need_ok_share": 1.0,
            "option_switch_rate": 0.2727,
            "option_thrash_rate": 0.1591,
            "reward_mean": 0.003391,
            "self_sufficiency": 1.0,
        },
        {
            "attendance": 0.875,
            "collapses": 0,
            "lateness": 0.0,
            "need_ok_share": 0.9435,
            "option_switch_rate": 0.0233,
            "option_thrash_rate": 0.0,
            "reward_mean": 0.008492,
            "self_sufficiency": 0.6,
        },
    ],
    "report": {"attendance": 0.875, "collapses": 0, "lateness": 0.0714, "need_ok_share": 0.9859, "shifts_attended": 14},
    "telemetry": [
        {
            "agent_ticks": 4000,
            "arrivals": 7,
            "chats": 0,
            "collapses": 0,
            "end": 1599,
            "exits": 0,
            "late_arrivals": 0,
            "lateness": 0.0,
            "need_ok_share": 0.9435,
            "option_starts_per_agent_day": 10.75,
            "start": 1200,
        },
        {
            "agent_ticks": 4000,
            "arrivals": 0,
            "chats": 0,
            "collapses": 0,
            "end": 1199,
            "exits": 0,
            "late_arrivals": 0,
            "lateness": 0.0,
            "need_ok_share": 1.0,
            "option_starts_per_agent_day": 11.0,
            "start": 800,
        },
    ],
    "training": {
        "attendance": 0.0,
        "collapses": 1.25,
        "exits": 0.0,
        "lateness": 0.0,
        "need_ok_share": 0.5262,
        "reward": -0.0239,
        "self_sufficiency": 0.0,
    },
}


def _views() -> dict:
    """Every KPI view of one fixed-seed town (and a batch): run totals, telemetry windows, meter spans, training."""
    loaded = load_config(overrides=["features.lifecycle=on", "population.agents=10", "telemetry.stability_window=400"])
    sim = Simulation(loaded, seed=3)
    enc = TelemetryEncoder(sim, sim.config.telemetry)
    meter = KpiMeter(sim, span=400)
    sim.add_phase("telemetry", lambda s: enc.encode(), after="kpi_meter")  # where the publisher encodes
    for _ in range(1600):
        sim.step()
    report = sim.kpis.report(sim.world)
    batch = BatchedTowns(2, variant="compact", overrides={"env.horizon": 700})
    batch.reset(seed=11)
    kpis = TownKpis(batch)
    idle = np.where(batch.alive, 6, -1)
    for _ in range(800):
        batch.step(np.where(batch.alive, idle, -1))
        kpis.update()
    return {
        "report": {k: report[k] for k in ("attendance", "lateness", "need_ok_share", "shifts_attended", "collapses")},
        "telemetry": [dict(w) for w in enc.kpi_windows.closed],
        "meter": [s.kpis() for s in meter.spans],
        "training": window_kpis(kpis.close_window(), 1000),
    }


def test_every_kpi_view_gives_the_numbers_it_gave_before() -> None:
    """Run totals, telemetry windows, evaluation meter spans and training windows equal the pinned values."""
    assert _views() == BEFORE


def test_the_definitions_at_their_edges() -> None:
    """No shift resolved is full attendance, no arrival no lateness, no agent-tick full need health."""
    assert attendance(0, 0) == 1.0 and attendance(3, 1) == 0.75
    assert lateness(0, 0) == 0.0 and lateness(1, 4) == 0.25
    assert need_ok_share(0, 0) == 1.0 and need_ok_share(9, 10) == 0.9

"""The one KPI accumulator: telemetry, training and evaluation windows count the same ticks alike; old state loads."""

from __future__ import annotations

import numpy as np

from townlet.config.loader import load_config
from townlet.env import BatchedTowns
from townlet.sim import Simulation
from townlet.sim.kpis import COUNTS, PRESENT, SUFFICIENT, TICKS, KpiAccumulator, KpiMeter, WindowStats
from townlet.telemetry.encoder import TelemetryEncoder
from townlet.training.windows import BestWindows, TownKpis, window_kpis

SETS = ["features.lifecycle=on", "population.agents=10", "telemetry.stability_window=300"]
WEIGHTS = {"self_sufficiency": 0.5, "need_ok_share": 0.25, "attendance": 0.25}


def _encoded(sim: Simulation) -> TelemetryEncoder:
    """An encoder run from a phase of each tick, where the publisher runs it."""
    enc = TelemetryEncoder(sim, sim.config.telemetry)
    sim.add_phase("telemetry", lambda s: enc.encode(), after="kpis")
    return enc


def test_telemetry_windows_and_meter_spans_agree_on_every_shared_count() -> None:
    """Over the same 300-tick windows, the stability section and the evaluation meter give the same numbers."""
    sim = Simulation(load_config(overrides=SETS), seed=3)
    meter = KpiMeter(sim, span=300)
    enc = _encoded(sim)
    closed = []
    for _ in range(1500):
        sim.step()
        if enc.kpi_windows.windows > len(closed):
            closed.append(enc.kpi_windows.closed[0])
    assert len(closed) == len(meter.spans) == 5
    assert any(span.need_ok_share < 1.0 for span in meter.spans), "some window has needs out of the ok range"
    for window, span in zip(closed, meter.spans, strict=True):
        assert (window["start"], window["end"]) == (span.start, span.start + span.ticks - 1)
        assert window["agent_ticks"] == span.agent_ticks
        assert window["need_ok_share"] == round(span.need_ok_share, 4)
        assert window["lateness"] == round(span.lateness, 4)
        assert (window["arrivals"], window["late_arrivals"]) == (span.arrivals, span.late)
        assert (window["collapses"], window["exits"], window["chats"]) == (span.collapses, span.exits, span.chats)


def test_training_windows_count_what_the_towns_own_meter_counts() -> None:
    """A training window over a one-town batch holds the very counts a meter riding that town's simulation holds."""
    batch = BatchedTowns(1, overrides=SETS)
    batch.reset(seed=5)
    town = batch.towns[0].sim
    meter = KpiMeter(town, span=400)
    kpis = TownKpis(batch)
    windows = []
    for tick in range(1200):
        batch.step(np.full((1, batch.capacity), -1, dtype=np.int64))
        kpis.update()
        if (tick + 1) % 400 == 0:
            windows.append(kpis.close_window())
    assert len(meter.spans) == 3
    for raw, span in zip(windows, meter.spans, strict=True):
        assert WindowStats.of(raw, span.start) == span
    total = meter.total()
    assert total.present and total.option_starts and total.arrivals, "the counts compared are not all zero"
    batch.close()


def test_a_batch_keeps_each_towns_window_and_banks_ended_episodes() -> None:
    """Two towns accumulate apart; agents there all window are present, those whose needs stayed ok sufficient."""
    alive = np.array([[True, True, False], [True, True, True]])
    acc = KpiAccumulator(2, 3, 0.7, alive)
    counts = np.zeros((2, len(COUNTS)))
    counts[:, TICKS] = [1, 2]
    acc.add(counts, np.array([[0.2, 0.8, 0.0], [0.1, 0.1, 0.1]], dtype=np.float32), alive, np.zeros_like(alive))
    arrived = np.array([[False, False, True], [False, False, False]])
    now = np.array([[True, True, True], [True, False, True]])  # town 1's second agent left
    acc.add(counts, np.zeros((2, 3), dtype=np.float32), now, arrived)
    acc.end_episode(1)  # town 1 reached its horizon: its two agents there all along are judged now
    out = acc.close(now)
    assert out[:, TICKS].tolist() == [2, 4]
    assert out[:, PRESENT].tolist() == [2, 2] and out[:, SUFFICIENT].tolist() == [1, 2]
    assert acc.whole.tolist() == now.tolist() and not acc.counts.any() and not acc.peak.any()


def test_best_windows_of_a_checkpoint_written_before_keep_their_score() -> None:
    """BestWindows state saved by 3fd12be (10-column window sums) loads with the same KPIs and keeps scoring."""
    old = {  # BestWindows(WEIGHTS, 2, 1000).state_dict() at 3fd12be after observing the two windows below
        "score": 0.778125,
        "step": 200,
        "kpis": {
            "attendance": 0.8125,
            "lateness": 0.2308,
            "need_ok_share": 0.925,
            "self_sufficiency": 0.6875,
            "collapses": 0.125,
            "exits": 0.125,
            "reward": -0.0028,
        },
        "recent": [
            [7.0, 1.0, 2.0, 3600.0, 4000.0, 1.0, 0.0, 5.0, 8.0, -12.5],
            [6.0, 2.0, 1.0, 3800.0, 4000.0, 0.0, 1.0, 6.0, 8.0, -10.0],
        ],
    }
    best = BestWindows(WEIGHTS, 2, 1000)
    best.load_state_dict(old)
    assert (best.score, best.step) == (0.778125, 200)
    assert window_kpis(np.sum(list(best.recent), axis=0), 1000) == old["kpis"]  # 3fd12be's window_kpis of the sum
    again = BestWindows(WEIGHTS, 2, 1000)
    again.load_state_dict(best.state_dict())
    assert [r.tolist() for r in again.recent] == [r.tolist() for r in best.recent]
    assert best.observe(best.recent[-1], 300) == (0.8, True)  # what 3fd12be gives for its second window again
    assert best.kpis is not None and best.kpis["exits"] == 0.25 and best.kpis["lateness"] == 0.1667


def test_a_telemetry_section_written_before_the_accumulator_continues_its_window() -> None:
    """A stability window saved with the run's totals at its start (3fd12be's form) closes as if never saved."""
    loaded = load_config(overrides=SETS)
    straight = Simulation(loaded, seed=2)
    enc_straight = _encoded(straight)
    straight.run(900)

    sim = Simulation(loaded, seed=2)
    enc = _encoded(sim)
    sim.run(450)
    state = enc.sidecar_state()
    windows, stats = dict(state["windows"]), dict(state["windows"]["stats"])
    # 3fd12be's form: the run's totals as the window opened, the open window's agent-ticks 0, no tick count
    windows["base_agent_ticks"] = sim.kpis.agent_ticks - stats["agent_ticks"]
    windows["base_need_ok"] = sim.kpis.need_ok_ticks - stats["need_ok_ticks"]
    stats.update(agent_ticks=0, need_ok_ticks=0, ticks=0)
    state["windows"] = {**windows, "stats": stats}
    fresh = TelemetryEncoder(sim, sim.config.telemetry)
    fresh.restore_sidecar(state)
    sim.phases = [(name, phase) for name, phase in sim.phases if name != "telemetry"]
    sim.add_phase("telemetry", lambda s: fresh.encode(), after="kpis")
    sim.run(450)
    assert list(fresh.kpi_windows.closed) == list(enc_straight.kpi_windows.closed)
    assert fresh.kpi_windows.windows == 3 and len(fresh.kpi_windows.closed) == 2

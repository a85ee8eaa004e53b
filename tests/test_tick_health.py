"""Tick health: fresh rolling timings with nobody watching, targets and headroom, the tick.health log line."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import jsonschema
import pytest

from townlet.cli.main import main
from townlet.config.loader import load_config
from townlet.logs import configure_logging
from townlet.server.live import LiveTown
from townlet.sim import Simulation
from townlet.sim.timings import TickTimings
from townlet.telemetry.health import EVENT, FIELDS, record_schema
from townlet.telemetry.publisher import TelemetryPublisher
from townlet.telemetry.replay import read_messages, state_at
from townlet.telemetry.transports import StdoutTransport

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_health_after_10000_ticks_without_a_viewer_shows_the_last_window(tmp_path: Path) -> None:
    """A live town nobody watches reports phase timings and slowest ticks of its last 1,000 ticks, not stale ones."""
    live = LiveTown.build(load_config(overrides=[f"console.state_dir={tmp_path}"]))
    live.publisher.attach()
    try:
        live.sim.run(10_000)
        health = live.console.health()
        perf = health["perf"]
        assert health["transports"]["viewers"]["clients"] == 0 and live.publisher.published == 0  # nobody watched
        assert perf["window"] == 1000 and perf["ticks"] == 1000 and perf["agents"] == 8
        assert {"policy", "arbitrate", "affordances", "world", "telemetry"} <= set(perf["phase_ms"])
        assert perf["phase_ms"]["policy"] > 0 and perf["tick_ms_mean"] > 0
        assert perf["tick_ms_p50"] <= perf["tick_ms_p99"] <= perf["tick_ms_max"]
        assert len(perf["slowest"]) == 5 and all(9000 <= s["tick"] <= 9999 for s in perf["slowest"])
        assert perf["slowest"][0]["ms"] == pytest.approx(perf["tick_ms_max"], abs=0.001)
        assert perf["target_tick_ms"] == 2.5
        assert perf["headroom"] == pytest.approx(1 - perf["tick_ms_mean"] / 2.5, abs=1e-3)
        live.sim.run(500)  # the window moves on with the town
        later = live.console.health()["perf"]
        assert 900 < later["ticks"] <= 1000 and all(s["tick"] >= 9500 for s in later["slowest"])
    finally:
        live.stop()


def test_perf_window_covers_the_same_ticks_for_every_figure() -> None:
    """Phase means sum to the tick mean: both cover the last window's ticks, rounded down to a tenth of it."""
    sim = Simulation(load_config(overrides=["telemetry.perf_window=100"]))
    sim.run(1)
    assert sim.perf()["ticks"] == 1
    sim.run(254)
    perf = sim.perf()
    assert perf["window"] == 100 and perf["ticks"] == 95  # 255 ticks: the marks fall every 10
    assert sum(perf["phase_ms"].values()) == pytest.approx(perf["tick_ms_mean"], rel=1e-3, abs=1e-3)


def test_clock_reads_folded_later_give_the_same_figures_as_adding_every_tick() -> None:
    """Timed ticks' clock reads, folded at marks, on reads and on a phase-list change, add up exactly."""
    phases = [("a", None), ("b", None), ("c", None)]
    totals = {"a": 0.0, "b": 0.0, "c": 0.0}
    timings = TickTimings(totals, window=20, slowest=3)  # a mark every 2 ticks
    expected = dict(totals)
    seconds, clock = [], 1000.0
    for tick in range(37):
        if tick == 23:  # a phase leaves mid-window (a detached publisher): folded under the old names first
            phases = phases[:2]
        reads = [clock]
        for i, (name, _) in enumerate(phases):
            clock += (tick % 5 + 1) * 1e-4 * (i + 1)
            reads.append(clock)
            expected[name] += reads[-1] - reads[-2]
        seconds.append(reads[-1] - reads[0])
        timings.record_phases(tick, phases, reads)
        if tick in (4, 11, 30):  # anything reading the totals folds what is pending
            assert timings.fold() == pytest.approx(expected, abs=1e-12)
    assert timings.fold() == pytest.approx(expected, abs=1e-12) and timings.recorded == 37
    perf = timings.summary(8, None)
    assert perf["ticks"] == 19  # 37 recorded, a mark every 2 ticks: from the mark at 18, inside the window of 20
    assert perf["tick_ms_max"] == pytest.approx(max(seconds[18:]) * 1000.0, abs=1e-4)
    assert sum(perf["phase_ms"].values()) == pytest.approx(perf["tick_ms_mean"], abs=1e-4)
    assert [s["tick"] for s in perf["slowest"]] == sorted(range(18, 37), key=lambda t: -seconds[t])[:3]


def test_target_tick_ms_interpolates_between_the_configured_populations() -> None:
    """Linear between listed populations, the first target below them, proportional above them, None when empty."""
    telemetry = load_config(overrides=["telemetry.tick_target_ms={8: 2.5, 1000: 25.0}"]).config.telemetry
    assert telemetry.target_tick_ms(1) == 2.5 and telemetry.target_tick_ms(8) == 2.5
    assert telemetry.target_tick_ms(504) == pytest.approx(13.75)
    assert telemetry.target_tick_ms(2000) == pytest.approx(50.0)
    none = load_config(overrides=["telemetry.tick_target_ms={}"])
    assert none.config.telemetry.target_tick_ms(8) is None
    sim = Simulation(none)
    sim.run(20)
    assert sim.perf()["target_tick_ms"] is None and sim.perf()["headroom"] is None


def test_tick_health_log_line_validates_against_its_documented_fields() -> None:
    """Each tick.health record matches its JSON Schema, and docs/ops/logs.md documents exactly its fields."""
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    sim = Simulation(load_config(overrides=["telemetry.health_log_s=0.000001"]))
    publisher = TelemetryPublisher(sim, transports=[StdoutTransport(stream=io.BytesIO())]).attach()
    sim.run(30)
    publisher.close()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    lines = [r for r in records if r["event"] == EVENT]
    assert len(lines) >= 20
    schema = record_schema()
    for record in lines:
        jsonschema.validate(record, schema)
    last = lines[-1]["context"]
    assert last["agents"] == 8 and last["transports"] == 1 and last["viewers"] == 0 and last["dropped"] == 0
    assert last["window"] == lines[-1]["tick"] and last["ticks_per_s"] > 0
    text = (DOCS / "ops" / "logs.md").read_text(encoding="utf-8")
    section = text.split("## The tick.health line", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_0-9]+)` \|", section, flags=re.MULTILINE)
    assert documented == list(FIELDS)


def test_run_writes_the_configured_transports_without_the_telemetry_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`townlet run --set telemetry.transports=…` writes the stream, and logs structured lines as serve does."""
    path = tmp_path / "town.jsonl"
    code = main(
        [
            "run",
            "--ticks",
            "120",
            "--json",
            "--set",
            f"telemetry.transports=[{{kind: file, path: '{path}'}}]",
            "--set",
            "telemetry.health_log_s=0.000001",
            "--set",
            "logging.format=kv",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0 and json.loads(out)["ticks"] == 120
    messages = list(read_messages(path))
    assert messages[0]["type"] == "snapshot" and sum(m["type"] == "diff" for m in messages) == 119
    assert state_at(read_messages(path))["tick"] == 119
    assert re.search(
        r"^ts=\S+ level=info logger=townlet.telemetry event=tick.health tick=\d+ window=", err, flags=re.MULTILINE
    )


def test_snapshots_leave_out_the_wall_clock_timings(tmp_path: Path) -> None:
    """A snapshot carries no tick timings: they describe this process, and a resumed town starts its own window."""
    from townlet.sim import snapshot

    sim = Simulation(load_config())
    sim.run(50)
    assert not any(path.endswith(".timings") for path in snapshot.capture(sim))
    snapshot.write(sim, tmp_path / "a.snap")
    resumed = snapshot.load(tmp_path / "a.snap")
    assert resumed.perf()["ticks"] == 0 and resumed.state_hash() == sim.state_hash()

"""Telemetry: the schema, snapshot/diff encoding, exact reconstruction, determinism, replay and the CLI."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from townlet.cli.main import main
from townlet.config.loader import load_config
from townlet.logs import reset_logging
from townlet.sim import Simulation
from townlet.telemetry.diff import apply_patch, make_patch
from townlet.telemetry.publisher import PHASE, TelemetryPublisher
from townlet.telemetry.replay import StreamError, StreamState, read_messages, state_at
from townlet.telemetry.schema import SCHEMA_FILE, build_schema, published_schema, schema_text
from townlet.telemetry.state import StateBuilder
from townlet.telemetry.transports import FileTransport, StdoutTransport

# A busy town: lifecycle and perturbations on, utility faults, more agents than homes' defaults.
BUSY = ["stage=M3", "population.agents=12", "utilities.fault_rate_per_day=4"]
ENCODER_SECTIONS = ("stability", "narration", "perf", "transports")


def busy_sim(seed: int = 3, extra: list[str] | None = None) -> Simulation:
    return Simulation(load_config(overrides=BUSY + (extra or [])), seed=seed)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    """A validator for the published schema."""
    schema = published_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def fresh_state(sim: Simulation, publisher: TelemetryPublisher) -> dict:
    """The state built from scratch (no caches), plus the sections only the encoder keeps."""
    state = StateBuilder(sim, publisher.cfg.digits).build()
    state.update({k: publisher.encoder.state[k] for k in ENCODER_SECTIONS if k in publisher.encoder.state})
    return state


def test_published_schema_file_is_the_built_schema() -> None:
    """The schema file in the package is exactly what the code builds (it cannot drift)."""
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text()
    assert published_schema() == json.loads(json.dumps(build_schema()))


def test_every_message_of_a_2000_tick_run_validates_and_diffs_rebuild_the_state(tmp_path: Path, validator) -> None:
    """2,000 busy ticks: every line validates; applying the diffs equals a from-scratch snapshot at random ticks."""
    sim = busy_sim()
    path = tmp_path / "stream.jsonl"
    publisher = TelemetryPublisher(sim, transports=[FileTransport(path)]).attach()
    rng = np.random.default_rng(7)
    checks = set(rng.choice(2000, size=25, replace=False).tolist()) | {0, 1999}
    direct: dict[int, dict] = {}

    def capture(s: Simulation) -> None:  # runs right after the telemetry phase, inside the tick
        if s.world.tick in checks:
            direct[s.world.tick] = orjson.loads(orjson.dumps(fresh_state(s, publisher)))

    sim.add_phase("capture", capture, after=PHASE)
    sim.run(2000)
    publisher.close()
    messages = list(read_messages(path))
    assert messages[0]["type"] == "snapshot" and messages[0]["tick"] == 0
    kinds = {m["type"] for m in messages}
    assert kinds == {"snapshot", "diff", "event"}
    for message in messages:
        errors = list(validator.iter_errors(message))
        assert not errors, (message.get("type"), message.get("tick"), errors[0].message[:300])
    events = [m for m in messages if m["type"] == "event"]
    assert {"perturbation_started", "utility_changed", "option_started"} <= {e["kind"] for e in events}
    reader = StreamState()
    rebuilt = {}
    for message in messages:
        if reader.feed(message) and reader.tick in checks:
            rebuilt[reader.tick] = copy.deepcopy(reader.state)
    assert reader.gaps == 0 and reader.tick == 1999
    for tick in sorted(checks):
        assert rebuilt[tick] == direct[tick], tick


def test_the_stream_is_byte_identical_for_the_same_config_seed_and_inputs(tmp_path: Path) -> None:
    """Two runs with wall-clock sections off write the same bytes; a different seed does not."""
    paths = []
    for i, seed in enumerate((5, 5, 6)):
        sim = busy_sim(seed, ["telemetry.health_every=0"])
        path = tmp_path / f"s{i}.jsonl"
        publisher = TelemetryPublisher(sim, transports=[FileTransport(path)]).attach()
        sim.run(400)
        publisher.close()
        paths.append(path.read_bytes())
    assert paths[0] == paths[1]
    assert paths[0] != paths[2]
    assert b'"perf"' not in paths[0]


def test_telemetry_costs_nothing_until_attached_and_leaves_when_detached() -> None:
    """No phase without a publisher; attaching adds one phase last; detaching removes it."""
    sim = busy_sim()
    before = [name for name, _ in sim.phases]
    assert PHASE not in before
    publisher = TelemetryPublisher(sim, transports=[StdoutTransport(stream=io.BytesIO())]).attach()
    assert [name for name, _ in sim.phases] == before + [PHASE]
    sim.step()
    publisher.close()
    assert [name for name, _ in sim.phases] == before
    assert PHASE not in sim.phase_total


def test_stdout_transport_writes_snapshot_then_diffs_and_events() -> None:
    """The first line is a snapshot; then one diff per tick, each followed by that tick's events."""
    buffer = io.BytesIO()
    sim = busy_sim()
    publisher = TelemetryPublisher(sim, transports=[StdoutTransport(stream=buffer)]).attach()
    sim.run(50)
    publisher.close()
    lines = [orjson.loads(line) for line in buffer.getvalue().splitlines()]
    assert lines[0]["type"] == "snapshot" and lines[0]["config_id"] == sim.loaded.config_id
    ticks = [m["tick"] for m in lines if m["type"] == "diff"]
    assert ticks == list(range(1, 50))
    order = [m["tick"] for m in lines]
    assert order == sorted(order)


def test_perf_and_transport_health_sections_report_phase_timings_and_slowest_ticks(tmp_path: Path) -> None:
    """Every health_every ticks the state carries the last perf_window ticks: phase ms, slowest ticks, transports."""
    sim = busy_sim(extra=["telemetry.health_every=20", "telemetry.slowest_ticks=3", "telemetry.perf_window=40"])
    publisher = TelemetryPublisher(sim, transports=[FileTransport(tmp_path / "t.jsonl")]).attach()
    sim.run(100)
    publisher.close()
    state = state_at(read_messages(tmp_path / "t.jsonl"))["state"]
    perf = state["perf"]
    assert perf["ticks"] == perf["window"] == 40 and len(perf["slowest"]) == 3
    assert {"policy", "arbitrate", "world", "telemetry"} <= set(perf["phase_ms"])
    assert perf["slowest"][0]["ms"] >= perf["slowest"][-1]["ms"] > 0
    health = state["transports"]["file"]
    assert health["connected"] and health["dropped"] == 0 and health["sent"] > 0 and health["queue_capacity"] == 256


def test_stability_windows_close_every_window_ticks() -> None:
    """Rolling KPI windows: after 2.5 windows the last two closed ones are published with their bounds."""
    sim = busy_sim(extra=["telemetry.stability_window=100"])
    publisher = TelemetryPublisher(sim, transports=[StdoutTransport(stream=io.BytesIO())]).attach()
    sim.run(250)
    publisher.close()
    stability = publisher.encoder.state["stability"]
    assert stability["windows"] == 2
    assert (stability["last"]["start"], stability["last"]["end"]) == (100, 199)
    assert (stability["previous"]["start"], stability["previous"]["end"]) == (0, 99)
    assert stability["last"]["agent_ticks"] == 100 * 12 or stability["last"]["exits"] > 0
    assert 0.0 <= stability["last"]["need_ok_share"] <= 1.0


def test_narration_lines_and_privacy_pseudonyms_reach_the_stream() -> None:
    """With privacy on, no agent id appears anywhere in the stream; narration lines carry their category."""
    sim = busy_sim(extra=["narration.privacy=on", "narration.global_limit=100"])
    buffer = io.BytesIO()
    publisher = TelemetryPublisher(sim, transports=[StdoutTransport(stream=buffer)]).attach()
    sim.lifecycle.exit(0, "console")  # an exit (and later an arrival) is always narrated
    sim.run(60)
    publisher.close()
    data = buffer.getvalue()
    assert re.search(rb"agent_[0-9]", data) is None
    narration = publisher.encoder.state["narration"]
    assert narration and {"tick", "text", "category"} <= set(narration[0])
    assert set(publisher.encoder.state["agents"]) == {sim.narration.pseudonyms.of(n) for n in sim.world.agents.slot_of}


def test_replay_cli_rebuilds_the_state_at_a_tick(tmp_path: Path, capsys) -> None:
    """`run --telemetry FILE` then `telemetry replay FILE --tick T` prints the state after tick T."""
    path = tmp_path / "town.jsonl"
    assert main(["run", "--ticks", "120", "--seed", "2", "--json", "--telemetry", str(path)]) == 0
    run_out = json.loads(capsys.readouterr().out)
    assert run_out["ticks"] == 120
    first = orjson.loads(path.read_bytes().splitlines()[0])
    assert first["type"] == "snapshot"
    assert main(["telemetry", "replay", str(path), "--tick", "77"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["type"] == "snapshot" and replayed["tick"] == 77 and replayed["state"]["tick"] == 77
    assert replayed["state"] == state_at(read_messages(path), 77)["state"]
    assert main(["telemetry", "replay", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["tick"] == 119
    assert main(["telemetry", "replay", str(path), "--tick", "500"]) == 2
    assert "does not contain tick 500" in capsys.readouterr().err
    reset_logging()  # `run --telemetry` configured the structured log handler


def test_schema_cli_prints_the_published_schema(capsys) -> None:
    """`townlet telemetry schema` prints the schema file."""
    assert main(["telemetry", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == published_schema()


def test_replay_of_a_missing_or_garbled_file_is_a_clean_error(tmp_path: Path, capsys) -> None:
    """A missing file or a non-JSON line gives exit code 2 and one message."""
    assert main(["telemetry", "replay", str(tmp_path / "nope.jsonl")]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "snapshot"\n')
    assert main(["telemetry", "replay", str(bad)]) == 2
    assert "not JSON" in capsys.readouterr().err
    with pytest.raises(StreamError):
        state_at([{"type": "diff", "tick": 3, "patch": {}}])


def test_a_diff_that_skips_a_tick_is_a_gap_until_the_next_snapshot() -> None:
    """A consumer never applies a diff to the wrong base: it waits for a snapshot."""
    reader = StreamState()
    reader.feed({"type": "snapshot", "tick": 1, "state": {"tick": 1, "a": 1}})
    assert not reader.feed({"type": "diff", "tick": 3, "patch": {"tick": 3}})
    assert reader.state is None and reader.gaps == 1
    assert not reader.feed({"type": "diff", "tick": 4, "patch": {"tick": 4}})
    reader.feed({"type": "snapshot", "tick": 5, "state": {"tick": 5}})
    assert reader.feed({"type": "diff", "tick": 6, "patch": {"tick": 6, "b": [1]}})
    assert reader.state == {"tick": 6, "b": [1]}


json_leaf = st.one_of(
    st.integers(-5, 5),
    st.floats(-2, 2, allow_nan=False),
    st.booleans(),
    st.text(max_size=3),
    st.lists(st.integers(0, 3), max_size=3),
)
json_state = st.recursive(
    json_leaf, lambda inner: st.dictionaries(st.text("abc", min_size=1, max_size=2), inner, max_size=4), max_leaves=20
)
state_dicts = st.dictionaries(st.text("abcd", min_size=1, max_size=2), json_state, max_size=5)


@settings(max_examples=120, deadline=None)
@given(state_dicts, state_dicts)
def test_merge_patch_turns_any_null_free_state_into_any_other(old: dict, new: dict) -> None:
    """make_patch/apply_patch round-trip for any pair of null-free JSON objects, and survive JSON encoding."""
    patch = make_patch(old, new)
    rebuilt = apply_patch(copy.deepcopy(old), orjson.loads(orjson.dumps(patch)))
    assert orjson.dumps(rebuilt, option=orjson.OPT_SORT_KEYS) == orjson.dumps(new, option=orjson.OPT_SORT_KEYS)
    assert make_patch(new, new) == {}


def test_a_viewerless_websocket_transport_skips_encoding() -> None:
    """With only a WebSocket transport and no client, ticks are folded but nothing is encoded."""
    from townlet.config.models import WebSocketTransportConfig
    from townlet.telemetry.websocket import WebSocketTransport

    sim = busy_sim()
    ws = WebSocketTransport(WebSocketTransportConfig(kind="websocket", port=0, tls=False, allow_plaintext=True))
    publisher = TelemetryPublisher(sim, transports=[ws]).attach()
    sim.run(30)
    assert publisher.published == 0 and publisher.encoder.state is None
    publisher.close()

"""Snapshots carry the telemetry sequence and the live stability windows: a resumed town continues both exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from townlet.config.loader import load_config
from townlet.sim import snapshot
from townlet.sim.simulation import Simulation
from townlet.telemetry.diff import apply_patch
from townlet.telemetry.outbox import Batch
from townlet.telemetry.publisher import TelemetryPublisher
from townlet.telemetry.transports import Transport
from townlet.training.live import LivePolicies
from townlet.training.stability import Baseline

# Short windows so several close (and one is open) around the snapshot; a strict reward baseline fires canaries.
SETS = [
    "stability.window_ticks=120",
    "telemetry.stability_window=100",
    "telemetry.health_every=0",
    "features.perturbations=on",
    "features.lifecycle=on",
]
BASELINE = Baseline(lateness=0.05, reward_mean=0.5, reward_std=0.001, windows=3)
SPLIT, MORE = 430, 270


class Memory(Transport):
    """A consumer that keeps every line it is handed and rebuilds the state of each tick from them."""

    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[int, dict[str, Any]] = {}
        self.kinds: dict[int, str] = {}
        self.events: dict[int, list[dict[str, Any]]] = {}
        self._state: dict[str, Any] | None = None

    def put(self, batch: Batch) -> None:
        """Apply one tick's lines (a snapshot when there is no base yet)."""
        data = batch.snapshot() if self._state is None else batch.diff
        for line in data.splitlines():
            msg = orjson.loads(line)
            if msg["type"] == "snapshot":
                self._state = msg["state"]
            elif msg["type"] == "diff":
                assert self._state is not None
                self._state = apply_patch(self._state, msg["patch"])
            else:
                self.events.setdefault(batch.tick, []).append(msg)
                continue
            self.kinds[batch.tick] = msg["type"]
        self.states[batch.tick] = orjson.loads(orjson.dumps(self._state))

    def counts(self) -> tuple[int, int]:
        """Nothing is dropped."""
        return len(self.states), 0

    def health(self) -> dict[str, Any]:
        """No queue."""
        return {}


def watched(sim: Simulation) -> tuple[TelemetryPublisher, Memory, LivePolicies]:
    """A live town's sidecars around ``sim``: a publisher to a memory consumer, the policy desk with canaries."""
    memory = Memory()
    publisher = TelemetryPublisher(sim, transports=[memory]).attach()
    desk = LivePolicies(sim, None, BASELINE)
    publisher.encoder.stability_source = desk.stability_section
    return publisher, memory, desk


def test_resumed_snapshot_continues_telemetry_and_stability_windows(tmp_path: Path) -> None:
    """N ticks, a snapshot, a fresh process's M ticks: the same stream, windows and canaries as N + M straight."""
    loaded = load_config(overrides=SETS)
    whole = Simulation(loaded, seed=4)
    pub_a, mem_a, desk_a = watched(whole)
    whole.run(SPLIT + MORE)

    first = Simulation(loaded, seed=4)
    pub_b, _, desk_b = watched(first)
    first.run(SPLIT)
    path = snapshot.write(first, tmp_path / "t.snap")
    assert desk_b.monitor is not None and desk_b.monitor.meter.current.ticks > 0, "a window is open at the split"
    resumed = snapshot.load(path, loaded)
    pub_c, mem_c, desk_c = watched(resumed)
    resumed.run(MORE)

    assert resumed.state_hash() == whole.state_hash()
    assert pub_c.published == pub_a.published == SPLIT + MORE
    ticks = sorted(mem_c.states)
    assert ticks == list(range(SPLIT, SPLIT + MORE))  # a batch is labelled with the tick it simulated
    assert mem_c.kinds[ticks[0]] == "snapshot" and mem_c.kinds[ticks[1]] == "diff"
    for tick in ticks:
        assert mem_c.states[tick] == mem_a.states[tick], f"telemetry state differs at tick {tick}"
        assert mem_c.events.get(tick) == mem_a.events.get(tick), f"events differ at tick {tick}"
    stability = mem_c.states[ticks[-1]]["stability"]
    assert stability["windows"] == (SPLIT + MORE) // 100 and stability["canaries"]["reward_collapse"]["fired"] > 0
    assert desk_a.monitor is not None and desk_c.monitor is not None
    assert [r.to_dict() for r in desk_c.monitor.reports] == [r.to_dict() for r in desk_a.monitor.reports]
    assert len(desk_c.monitor.reports) == (SPLIT + MORE) // 120
    assert desk_c.canary_states() == desk_a.canary_states()
    assert desk_c.windows_passed == desk_a.windows_passed


def test_without_sidecars_the_sections_are_empty_and_a_later_owner_starts_afresh(make_sim, tmp_path: Path) -> None:
    """A town nobody watched saves null sections; a stale section is not handed to an owner after ticks ran."""
    sim = make_sim(seed=1)
    sim.run(20)
    snap = snapshot.read(snapshot.write(sim, tmp_path / "a.snap"))
    state = snap.state()
    assert state["telemetry"] is None and state["stability"] is None

    loaded = load_config(overrides=SETS)
    watched_sim = Simulation(loaded, seed=2)
    publisher, _, _ = watched(watched_sim)
    watched_sim.run(150)
    path = snapshot.write(watched_sim, tmp_path / "b.snap")
    resumed = snapshot.load(path, loaded)
    assert resumed.sidecar_pending["telemetry"]["state"]["published"] == 150
    again = snapshot.read(snapshot.write(resumed, tmp_path / "c.snap")).state()
    assert again["telemetry"]["state"]["published"] == 150, "carried through a load and save with no publisher"
    resumed.run(5)
    late = TelemetryPublisher(resumed)
    assert late.published == 0 and late.encoder.kpi_windows.windows == 0, "stale windows are dropped"


def test_a_sidecar_section_of_the_wrong_shape_is_refused(make_sim) -> None:
    """Restoring a malformed telemetry section into a watched town fails with the field named."""
    sim = make_sim(seed=1)
    TelemetryPublisher(sim)
    state = snapshot.capture(sim)
    state["telemetry"]["state"]["windows"]["closed"] = [1, 2]
    with pytest.raises(snapshot.SnapshotError, match="telemetry.windows.closed"):
        snapshot.restore(sim, state)
    state["telemetry"] = {"tick": "x"}
    with pytest.raises(snapshot.SnapshotError, match="telemetry section must be"):
        snapshot.restore(sim, state)

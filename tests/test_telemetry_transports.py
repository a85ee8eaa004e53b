"""Telemetry transports: rotating files, TCP to a collector (reconnect, resync), WebSocket viewers, health."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from telemetry_support import Collector, free_port
from townlet.config.errors import ConfigError
from townlet.config.loader import load_config
from townlet.config.models import TcpTransportConfig, WebSocketTransportConfig
from townlet.sim import Simulation
from townlet.telemetry.outbox import Batch, Item, Outbox
from townlet.telemetry.publisher import DropWatch, TelemetryPublisher
from townlet.telemetry.replay import StreamState, read_messages, state_at
from townlet.telemetry.transports import FileTransport, StreamTransport, TcpTransport, build_transport
from townlet.telemetry.websocket import WebSocketTransport


def plain_tcp(port: int, **extra) -> TcpTransport:
    return TcpTransport(
        TcpTransportConfig(
            kind="tcp", host="127.0.0.1", port=port, tls=False, allow_plaintext=True, backoff=(0.05, 0.2), **extra
        )
    )


def rebuild(messages: list[dict]) -> StreamState:
    reader = StreamState()
    for m in messages:
        reader.feed(m)
    return reader


def test_file_transport_rotates_by_size_and_every_file_starts_with_a_snapshot(tmp_path: Path) -> None:
    """Rotation keeps N backups; each file is replayable on its own and the newest ends at the last tick."""
    sim = Simulation(seed=1)
    path = tmp_path / "t.jsonl"
    transport = FileTransport(path, max_bytes=40_000, backups=2)
    publisher = TelemetryPublisher(sim, transports=[transport]).attach()
    sim.run(400)
    publisher.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["t.jsonl", "t.jsonl.1", "t.jsonl.2"]
    assert transport.rotations >= 3
    for f in files:
        first = next(read_messages(f))
        assert first["type"] == "snapshot"
        assert rebuild(list(read_messages(f))).gaps == 0
        assert f.stat().st_size < 40_000 + 20_000
    assert state_at(read_messages(path))["tick"] == 399
    assert state_at(read_messages(path))["state"] == publisher.encoder.state


def test_tcp_transport_streams_to_a_collector_and_resyncs_after_reconnecting() -> None:
    """A collector receives snapshot + diffs; after it restarts, the transport reconnects and starts a snapshot."""
    collector = Collector()
    sim = Simulation(seed=2)
    transport = plain_tcp(collector.port)
    publisher = TelemetryPublisher(sim, transports=[transport]).attach()
    try:
        assert _wait(lambda: transport.outbox.connected)
        sim.run(60)
        assert collector.wait_for(lambda ms: any(m.get("tick") == 59 and m["type"] == "diff" for m in ms))
        assert rebuild(collector.messages()).state == publisher.encoder.state
        port = collector.port
        collector.close()
        for _ in range(40):  # the broken pipe shows up on a later write
            sim.step()
            time.sleep(0.005)
        assert _wait(lambda: not transport.outbox.connected)
        health = transport.health()
        assert health["retry_streak"] >= 1 and health["last_error"] and health["last_failure_tick"] >= 60
        collector = Collector(port=port)
        assert _wait(lambda: transport.outbox.connected)
        sim.run(20)
        assert collector.wait_for(lambda ms: bool(ms) and ms[-1].get("tick") == sim.world.tick - 1)
        got = collector.messages()
        assert got[0]["type"] == "snapshot" and got[0]["tick"] >= 100
        assert rebuild(got).state == publisher.encoder.state
        assert transport.health()["connected"] and transport.health()["retry_streak"] == 0
    finally:
        publisher.close()
        collector.close()


def test_a_dead_collector_is_retried_with_backoff_and_reported() -> None:
    """Connection refused: nothing blocks, drops are counted, the retry streak grows, the error is kept."""
    sim = Simulation(seed=2)
    transport = plain_tcp(free_port())
    publisher = TelemetryPublisher(sim, transports=[transport]).attach()
    start = time.perf_counter()
    sim.run(200)
    elapsed = time.perf_counter() - start
    assert _wait(lambda: transport.health()["retry_streak"] >= 2)  # the sender retries at its own pace
    health = publisher.transport_health()[transport.name]
    publisher.close()
    assert not health["connected"] and health["dropped"] > 0 and health["sent"] == 0
    assert health["retry_streak"] >= 2 and "refused" in health["last_error"].lower()
    assert health["in_loss"] and health["alerts"] == 1
    assert elapsed < 5


def test_websocket_viewers_get_a_snapshot_then_diffs_and_rebuild_the_state() -> None:
    """Two WebSocket viewers joining at different ticks each start with a snapshot and stay exact."""
    sim = Simulation(seed=4)
    ws = WebSocketTransport(WebSocketTransportConfig(kind="websocket", port=0, tls=False, allow_plaintext=True))
    publisher = TelemetryPublisher(sim, transports=[ws]).attach()
    try:
        with connect(ws.url, max_queue=None) as first:
            assert _wait(lambda: ws.health()["clients"] == 1)
            sim.run(30)
            got = _receive(first, until_tick=sim.world.tick - 1)
            assert got[0]["type"] == "snapshot"
            assert rebuild(got).state == publisher.encoder.state
            with connect(ws.url, max_queue=None) as second:
                assert _wait(lambda: ws.health()["clients"] == 2)
                sim.run(10)
                later = _receive(second, until_tick=sim.world.tick - 1)
                assert later[0]["type"] == "snapshot" and later[0]["tick"] == 30
                assert rebuild(later).state == publisher.encoder.state
                more = _receive(first, until_tick=sim.world.tick - 1)
                assert rebuild(got + more).state == publisher.encoder.state
        assert _wait(lambda: ws.health()["clients"] == 0)
        health = ws.health()
        assert health["sent"] > 0 and health["snapshots"] == 2 and health["dropped"] == 0
    finally:
        publisher.close()


def test_websocket_refuses_unknown_paths() -> None:
    """Only the configured path streams."""
    ws = WebSocketTransport(WebSocketTransportConfig(kind="websocket", port=0, tls=False, allow_plaintext=True))
    ws.start()
    try:
        with connect(ws.url.replace("/telemetry", "/other")) as client, pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=2)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    finally:
        ws.close()


def test_outbox_overflow_drops_the_queue_counts_it_and_resyncs_with_a_snapshot() -> None:
    """A full queue is dropped whole (counted); the next tick goes out as a snapshot."""
    box = Outbox(capacity=3)
    box.set_connected(True)
    made = []

    def batch(tick: int) -> Batch:
        return Batch(tick, f"d{tick}\n".encode(), 1, lambda: made.append(tick) or f"s{tick}\n".encode())

    for tick in range(3):
        box.put(batch(tick))
    assert [i.data for i in box.queue] == [b"s0\n", b"d1\n", b"d2\n"]
    box.put(batch(3))  # overflow
    assert not box.queue and box.dropped == 4 and box.needs_snapshot
    box.put(batch(4))
    assert [i.data for i in box.queue] == [b"s4\n"] and made == [0, 4] and box.snapshots == 2


def test_a_stuck_sender_drops_new_ticks_without_building_snapshots() -> None:
    """While the sender is blocked mid-write and a resync is due, ticks are dropped at once and nothing is built."""
    box = Outbox(capacity=2)
    box.set_connected(True)
    built = []
    box.put(Batch(0, b"d\n", 2, lambda: built.append(0) or b"s\n"))
    assert box.take() is not None and box.in_flight
    box.needs_snapshot = True
    for tick in range(1, 50):
        box.put(Batch(tick, b"d\n", 2, lambda: built.append(1) or b"s\n"))
    assert box.dropped == 98 and built == [0] and not box.queue


def test_drop_watch_alerts_once_per_episode_of_loss() -> None:
    """A lasting loss is one episode (one alert); recovery below half the threshold re-arms it."""
    watch = DropWatch(window=10, threshold=0.2)
    offered = dropped = 0
    changes = []
    for tick in range(100):
        offered += 10
        if 10 <= tick < 40 or 70 <= tick < 80:
            dropped += 10
        changes.append(watch.update(offered, dropped))
    assert changes.count("start") == 2 and changes.count("end") == 2 and watch.alerts == 2


def test_drop_alert_is_logged_once_and_published_as_an_event(caplog, tmp_path: Path) -> None:
    """A dead collector: one warning log and one ``alert`` event on the other (healthy) transport."""
    sim = Simulation(seed=2)
    dead = plain_tcp(free_port())
    dead.name = "collector"
    path = tmp_path / "t.jsonl"
    publisher = TelemetryPublisher(sim, transports=[dead, FileTransport(path)]).attach()
    with caplog.at_level(logging.WARNING, logger="townlet.telemetry"):
        sim.run(300)
    publisher.close()
    alerts = [m for m in read_messages(path) if m["type"] == "event" and m["kind"] == "alert"]
    assert len(alerts) == 1 and alerts[0]["transport"] == "collector" and alerts[0]["value"] >= 0.05
    logged = [r for r in caplog.records if getattr(r, "event", "") == "telemetry.drop_alert"]
    assert len(logged) == 1 and logged[0].context["transport"] == "collector"


def test_transports_are_built_from_config_and_plaintext_needs_loopback(tmp_path: Path) -> None:
    """Config entries become transports; plaintext TCP to a non-loopback host is a config error."""
    loaded = load_config(
        overrides=[
            f"telemetry.transports=[{{kind: file, path: {tmp_path / 'a.jsonl'}}}, "
            "{kind: tcp, host: 127.0.0.1, port: 9, tls: false, allow_plaintext: true}]"
        ]
    )
    kinds = [build_transport(t).kind for t in loaded.config.telemetry.transports]
    assert kinds == ["file", "tcp"]
    with pytest.raises(ConfigError, match="loopback"):
        load_config(
            overrides=[
                "telemetry.transports=[{kind: tcp, host: 192.0.2.7, port: 9, tls: false, allow_plaintext: true}]"
            ]
        )
    with pytest.raises(ConfigError, match="allow_plaintext"):
        load_config(overrides=["telemetry.transports=[{kind: tcp, host: 127.0.0.1, port: 9, tls: false}]"])
    with pytest.raises(ConfigError, match="loopback"):
        load_config(
            overrides=[
                "telemetry.transports=[{kind: websocket, host: 0.0.0.0, port: 9, tls: false, allow_plaintext: true}]"
            ]
        )


def _wait(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _receive(client, until_tick: int, timeout: float = 60.0) -> list[dict]:
    """Messages from a WebSocket client until a message of ``until_tick`` (and its events) arrived."""
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = orjson.loads(client.recv(timeout=0.3))
        except TimeoutError:
            if out and out[-1]["tick"] >= until_tick:
                return out
            continue
        out.append(message)
    raise AssertionError(f"no message of tick {until_tick} (last: {out[-1] if out else None})")


class StalledStream(StreamTransport):
    """A stream whose consumer stopped reading: a write blocks until the transport is interrupted."""

    kind = "stalled"
    local = True

    def __init__(self) -> None:
        super().__init__("stalled")
        self.released = threading.Event()

    def _open(self) -> None:
        pass

    def _write(self, item: Item) -> None:
        self.released.wait()

    def _interrupt(self) -> None:
        self.released.set()

    def _disconnect(self) -> None:
        pass


def test_closing_a_transport_that_cannot_send_counts_what_it_still_held_as_dropped() -> None:
    """A consumer that stopped reading: close gives up after its timeout and the unsent ticks count as dropped."""
    transport = StalledStream()
    transport.start()
    transport.put(Batch(0, b"d\n", 1, lambda: b"s\n"))
    assert _wait(lambda: transport.outbox.in_flight, 60.0)  # the first tick is stuck in a write
    for tick in range(1, 20):
        transport.put(Batch(tick, b"d\n", 1, lambda: b"s\n"))
    transport.close(timeout=0.2)
    health = transport.health()
    assert health["queue_depth"] == 0 and health["sent"] == 1 and health["dropped"] == 19

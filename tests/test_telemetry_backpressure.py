"""Backpressure: a collector that stops reading for 1,000 ticks never slows the town, and the stream recovers."""

from __future__ import annotations

import io
import logging
import time

import orjson

from telemetry_support import Collector, free_port
from townlet.config.models import TcpTransportConfig
from townlet.sim import Simulation
from townlet.telemetry.publisher import TelemetryPublisher
from townlet.telemetry.replay import StreamState
from townlet.telemetry.transports import StdoutTransport, TcpTransport

STALL_TICKS = 1000
CHUNK = 50
SLACK = 0.9  # the stalled town must keep at least 90% of the no-consumer tick rate


def tcp(port: int, name: str = "collector") -> TcpTransport:
    """Plain loopback TCP with small buffers, so a stalled reader shows up within a few ticks."""
    return TcpTransport(
        TcpTransportConfig(
            kind="tcp",
            name=name,
            host="127.0.0.1",
            port=port,
            tls=False,
            allow_plaintext=True,
            buffer_ticks=64,
            send_buffer=8192,
            backoff=(0.05, 0.5),
        )
    )


def wait(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_a_stalled_consumer_costs_no_tick_rate_and_the_stream_recovers_with_a_snapshot(caplog) -> None:
    """Stall 1,000 ticks: rate ratio vs. no consumer >= 0.9, drops counted, one alert, recovery by snapshot."""
    collector = Collector(rcvbuf=4096)
    stalled_sim, baseline_sim = Simulation(seed=11), Simulation(seed=11)
    transport = tcp(collector.port)
    events = io.BytesIO()  # a second, healthy consumer of the stalled town's stream: it sees the alert
    stalled = TelemetryPublisher(stalled_sim, transports=[transport, StdoutTransport(stream=events)]).attach()
    # The same town and transports, but nobody listens on the collector's port.
    quiet = [tcp(free_port(), "nobody"), StdoutTransport(stream=io.BytesIO())]
    baseline = TelemetryPublisher(baseline_sim, transports=quiet).attach()
    try:
        assert wait(lambda: transport.outbox.connected)
        for sim in (stalled_sim, baseline_sim):
            sim.run(100)  # warm-up: distance fields, first snapshot
        assert collector.wait_for(lambda ms: any(m.get("tick") == 99 for m in ms))
        collector.reading.clear()  # the consumer stops reading
        times = {"stalled": 0.0, "baseline": 0.0}
        with caplog.at_level(logging.WARNING, logger="townlet.telemetry"):
            for _ in range(STALL_TICKS // CHUNK):  # interleaved, so machine load hits both alike
                for name, sim in (("stalled", stalled_sim), ("baseline", baseline_sim)):
                    t0 = time.perf_counter()
                    sim.run(CHUNK)
                    times[name] += time.perf_counter() - t0
        ratio = times["baseline"] / times["stalled"]  # (ticks / stalled time) / (ticks / baseline time)
        health = stalled.transport_health()["collector"]
        assert ratio >= SLACK, f"stalled/baseline tick-rate ratio {ratio:.3f}"
        assert health["dropped"] > STALL_TICKS // 2, health
        assert health["in_loss"] and health["alerts"] == 1
        alerts = [
            r
            for r in caplog.records
            if getattr(r, "event", "") == "telemetry.drop_alert" and r.context["transport"] == "collector"
        ]
        assert len(alerts) == 1
        lines = [orjson.loads(x) for x in events.getvalue().splitlines()]
        assert sum(1 for m in lines if m.get("kind") == "alert" and m.get("transport") == "collector") == 1

        stall_end = stalled_sim.world.tick
        collector.reading.set()  # the consumer reads again
        for _ in range(300):
            stalled_sim.step()
            time.sleep(0.001)
        last = stalled_sim.world.tick - 1
        assert collector.wait_for(lambda ms: bool(ms) and ms[-1].get("tick") == last)
        messages = collector.messages()
        resync = [m for m in messages if m["type"] == "snapshot" and m["tick"] >= stall_end]
        assert resync, "no fresh snapshot after the stall"
        reader = StreamState()
        for message in messages[messages.index(resync[0]) :]:
            reader.feed(message)
        assert reader.gaps == 0 and reader.state == stalled.encoder.state
        after = stalled.transport_health()["collector"]
        assert after["connected"] and after["last_success_tick"] == last and after["queue_depth"] == 0
        assert after["snapshots"] >= 2 and not after["in_loss"]
    finally:
        stalled.close(timeout=2)
        baseline.close(timeout=2)
        collector.close()

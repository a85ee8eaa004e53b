"""Structured logs: tick, event and context fields as JSON lines or key=value, chosen by config."""

from __future__ import annotations

import io
import json
import logging

import pytest

from townlet.config.errors import ConfigError
from townlet.config.loader import load_config
from townlet.logs import KeyValueFormatter, configure_logging, log_event, reset_logging
from townlet.sim import Simulation
from townlet.telemetry.publisher import TelemetryPublisher
from townlet.telemetry.transports import TcpTransport


@pytest.fixture
def stream():
    buffer = io.StringIO()
    yield buffer
    reset_logging()


def test_json_lines_carry_tick_event_and_context(stream) -> None:
    """One JSON object per record with ts, level, logger, event, tick and context."""
    configure_logging("json", "info", stream)
    log_event(
        logging.getLogger("townlet.telemetry"),
        "telemetry.drop_alert",
        1234,
        logging.WARNING,
        transport="collector",
        drop_rate=0.42,
    )
    logging.getLogger("townlet.console").info("plain message")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "telemetry.drop_alert" and first["tick"] == 1234 and first["level"] == "warning"
    assert first["context"] == {"transport": "collector", "drop_rate": 0.42} and first["logger"] == "townlet.telemetry"
    assert first["ts"].endswith("+00:00")
    assert second["event"] == "plain message" and second["tick"] is None and second["context"] == {}


def test_key_value_lines_flatten_the_context(stream) -> None:
    """Kv format: one line of key=value pairs, quoting values with spaces."""
    configure_logging("kv", "info", stream)
    log_event(
        logging.getLogger("townlet.console"),
        "console.command",
        7,
        principal="alice",
        cmd="rain",
        message="it rains now",
        ok=True,
    )
    line = stream.getvalue().strip()
    assert "level=info" in line and "event=console.command" in line and "tick=7" in line
    assert "principal=alice" in line and 'message="it rains now"' in line and "ok=true" in line
    assert "\n" not in line


def test_levels_filter_and_reconfiguring_replaces_the_handler(stream) -> None:
    """Below the level nothing is written; configuring twice keeps one handler."""
    configure_logging("json", "warning", stream)
    configure_logging("json", "warning", stream)
    log = logging.getLogger("townlet.telemetry")
    log_event(log, "telemetry.connected", 1, transport="x")
    log_event(log, "telemetry.send_failed", 2, logging.WARNING, transport="x")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["event"] == "telemetry.send_failed"


def test_exceptions_are_kept_in_one_record(stream) -> None:
    """A logged exception stays inside its JSON line."""
    configure_logging("json", "info", stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("townlet.console").exception("console command failed")
    record = json.loads(stream.getvalue())
    assert "RuntimeError: boom" in record["exc"] and record["level"] == "error"


def test_the_format_comes_from_config() -> None:
    """logging.format is json or kv; anything else names the key."""
    assert load_config(overrides=["logging.format=kv"]).config.logging.format == "kv"
    with pytest.raises(ConfigError, match="logging.format"):
        load_config(overrides=["logging.format=xml"])


def test_telemetry_health_decisions_are_logged_with_the_same_fields(stream) -> None:
    """A transport failure and a drop alert come out as structured records with tick and transport."""
    configure_logging("json", "info", stream)
    from townlet.config.models import TcpTransportConfig

    sim = Simulation(seed=0)
    dead = TcpTransport(
        TcpTransportConfig(
            kind="tcp", name="sink", host="127.0.0.1", port=1, tls=False, allow_plaintext=True, backoff=(0.05, 0.1)
        )
    )
    publisher = TelemetryPublisher(sim, transports=[dead]).attach()
    sim.run(50)
    publisher.close()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    events = {r["event"]: r for r in records}
    assert events["telemetry.drop_alert"]["context"]["transport"] == "sink"
    assert isinstance(events["telemetry.drop_alert"]["tick"], int)
    assert "telemetry.send_failed" in events
    assert KeyValueFormatter().format(logging.makeLogRecord({"msg": "x", "levelname": "INFO"})).startswith("ts=")

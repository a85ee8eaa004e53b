"""The telemetry sink (`townlet telemetry collect`): every connection to replayable files, TLS, bounded disk."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from telemetry_support import make_ca, make_cert, write_pem
from townlet.cli.main import main
from townlet.config.loader import load_config
from townlet.config.models import TcpTransportConfig
from townlet.sim import Simulation
from townlet.telemetry.collector import Sink
from townlet.telemetry.publisher import TelemetryPublisher
from townlet.telemetry.replay import read_messages, state_at
from townlet.telemetry.tls import server_context
from townlet.telemetry.transports import TcpTransport

WAIT_S = 60.0  # bound on each wait for the sink or the transport (a loaded machine is slow, not broken)


def serving(sink: Sink) -> threading.Thread:
    thread = threading.Thread(target=sink.serve, daemon=True)
    thread.start()
    return thread


def stream_ticks(sink: Sink, ticks: int, **tcp: object) -> tuple[Simulation, TcpTransport]:
    """A town streaming ``ticks`` ticks to the sink over the tcp transport."""
    sim = Simulation(load_config(overrides=["telemetry.health_every=0"]))
    cfg = TcpTransportConfig(kind="tcp", host="127.0.0.1", port=sink.port, **tcp)  # type: ignore[arg-type]
    transport = TcpTransport(cfg)
    publisher = TelemetryPublisher(sim, transports=[transport]).attach()
    deadline = time.monotonic() + WAIT_S
    while not transport.health()["connected"] and time.monotonic() < deadline:
        time.sleep(0.02)  # (the TLS handshake) so that no tick goes out before the connection
    sim.run(ticks)
    publisher.close(timeout=WAIT_S)  # returns as soon as everything is sent
    deadline = time.monotonic() + WAIT_S
    while sink.lines < transport.health()["sent"] and time.monotonic() < deadline:
        time.sleep(0.02)
    return sim, transport


def test_sink_writes_a_stream_that_replays_to_the_town_state(tmp_path: Path) -> None:
    """A town's stream lands in one file whose replay reaches the last tick, nothing dropped."""
    sink = Sink("127.0.0.1", 0, tmp_path / "out")
    serving(sink)
    try:
        _, transport = stream_ticks(sink, 120, tls=False, allow_plaintext=True)
    finally:
        sink.close()
    assert transport.health()["dropped"] == 0
    [path] = sink.files()
    messages = list(read_messages(path))
    assert messages[0]["type"] == "snapshot" and sum(m["type"] == "diff" for m in messages) == 119
    assert state_at(messages)["tick"] == 119


def test_rotated_files_each_open_with_a_rebuilt_snapshot_and_only_the_newest_are_kept(tmp_path: Path) -> None:
    """Past max_bytes a new file starts with the rebuilt state; every file replays; keep bounds the disk."""
    sink = Sink("127.0.0.1", 0, tmp_path / "out", max_bytes=40_000, keep=3)
    serving(sink)
    try:
        stream_ticks(sink, 400, tls=False, allow_plaintext=True)
    finally:
        sink.close()
    files = sink.files()
    assert len(files) == 3
    ends = []
    for path in files:
        messages = list(read_messages(path))
        assert messages[0]["type"] == "snapshot"
        ends.append(state_at(messages)["tick"])
    assert ends == sorted(ends) and ends[-1] == 399
    first_of_next = next(iter(read_messages(files[1])))
    previous_end = state_at(read_messages(files[0]))
    assert first_of_next["tick"] == previous_end["tick"] + 1  # no tick is lost between files


def test_sink_over_tls_with_client_certificates(tmp_path: Path) -> None:
    """With a server certificate and a client CA, a town presenting its certificate streams over TLS."""
    ca = make_ca()
    ca_pem, _ = write_pem(tmp_path, "ca", None, ca[1])
    cert, key = write_pem(tmp_path, "sink", *make_cert(ca))
    ccert, ckey = write_pem(tmp_path, "town", *make_cert(ca, "town", client=True))
    sink = Sink("127.0.0.1", 0, tmp_path / "out", server_context(cert, key, ca_pem))
    serving(sink)
    try:
        _, transport = stream_ticks(sink, 30, ca_file=ca_pem, cert_file=ccert, key_file=ckey, server_name="localhost")
    finally:
        sink.close()
    assert transport.health()["dropped"] == 0 and state_at(read_messages(sink.files()[0]))["tick"] == 29


def test_sink_closes_connections_that_send_no_telemetry(tmp_path: Path) -> None:
    """A line that is not a telemetry message ends that connection; nothing of it is executed or kept as a file."""
    sink = Sink("127.0.0.1", 0, tmp_path / "out")
    serving(sink)
    try:
        with socket.create_connection(("127.0.0.1", sink.port)) as conn:
            conn.sendall(b'{"type": "shell", "cmd": "rm -rf /"}\n')
            conn.settimeout(5)
            assert conn.recv(10) == b""  # closed by the sink
    finally:
        sink.close()
    assert sink.files() == [] and sink.lines == 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--listen", "0.0.0.0:0", "--allow-plaintext"], "only on a loopback address"),
        (["--listen", "127.0.0.1:0"], "--tls-cert"),
        (["--listen", "nowhere"], "HOST:PORT"),
    ],
)
def test_collect_refuses_plaintext_off_loopback_and_bad_addresses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    """`townlet telemetry collect` exits 2 naming the problem: plaintext beyond loopback, no TLS, a bad address."""
    code = main(["telemetry", "collect", "--out", str(tmp_path), *argv])
    assert code == 2 and needle in capsys.readouterr().err


def test_sink_closes_a_silent_connection_after_the_idle_timeout(tmp_path: Path) -> None:
    """A client that connects and sends nothing loses its slot after idle_s seconds."""
    sink = Sink("127.0.0.1", 0, tmp_path / "out", idle_s=0.3)
    serving(sink)
    try:
        with socket.create_connection(("127.0.0.1", sink.port)) as conn:
            conn.settimeout(5)
            started = time.monotonic()
            assert conn.recv(10) == b""
            assert time.monotonic() - started < 4
    finally:
        sink.close()

"""TLS for telemetry, with certificates made in the test: verification and hostname checks on by default."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import orjson
import pytest
from websockets.sync.client import connect

from telemetry_support import Collector, make_ca, make_cert, write_pem
from townlet.config.errors import ConfigError
from townlet.config.loader import load_config
from townlet.config.models import TcpTransportConfig, WebSocketTransportConfig
from townlet.sim import Simulation
from townlet.telemetry.publisher import TelemetryPublisher
from townlet.telemetry.tls import client_context, server_context
from townlet.telemetry.transports import TcpTransport
from townlet.telemetry.websocket import WebSocketTransport


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    """A CA, a server certificate for localhost/127.0.0.1, an expired one, a stranger CA's, a client cert."""
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca()
    stranger = make_ca("Somebody Else's CA")
    out: dict[str, str] = {}
    out["ca"], _ = write_pem(folder, "ca", None, ca[1])
    out["server"], out["server_key"] = write_pem(folder, "server", *make_cert(ca))
    out["expired"], out["expired_key"] = write_pem(folder, "expired", *make_cert(ca, expired=True))
    out["stranger"], out["stranger_key"] = write_pem(folder, "stranger", *make_cert(stranger))
    out["client"], out["client_key"] = write_pem(
        folder, "client", *make_cert(ca, common="sim-1", dns=(), ips=(), client=True)
    )
    return out


def stream_over_tls(
    collector: Collector,
    ca_file: str,
    server_name: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    ticks: int = 20,
    expect: bool = True,
) -> tuple[TcpTransport, list[dict]]:
    """Publish ``ticks`` ticks to the collector over TLS; return the transport and what arrived."""
    cfg = TcpTransportConfig(
        kind="tcp",
        host="127.0.0.1",
        port=collector.port,
        ca_file=ca_file,
        server_name=server_name,
        cert_file=cert,
        key_file=key,
        backoff=(0.05, 0.2),
    )
    transport = TcpTransport(cfg)
    sim = Simulation(seed=3)
    publisher = TelemetryPublisher(sim, transports=[transport]).attach()
    try:
        deadline = time.monotonic() + 60  # the handshake ends in a connection or an error; a loaded machine is slow
        while time.monotonic() < deadline and not transport.outbox.connected and not transport.outbox.last_error:
            time.sleep(0.01)
        sim.run(ticks)
        collector.wait_for(lambda ms: any(m.get("tick") == ticks - 1 for m in ms), timeout=60 if expect else 0.3)
    finally:
        publisher.close()
    return transport, collector.messages()


def test_handshake_succeeds_with_the_right_ca_and_host(pki) -> None:
    """A server certificate for 127.0.0.1 signed by our CA: connected, snapshot and diffs arrive."""
    collector = Collector(server_context(pki["server"], pki["server_key"]))
    try:
        transport, got = stream_over_tls(collector, pki["ca"])
    finally:
        collector.close()
    assert got and got[0]["type"] == "snapshot"
    assert any(m["type"] == "diff" and m["tick"] == 19 for m in got)
    assert transport.health()["tls"] and transport.health()["last_error"] == ""


def test_a_collector_that_reads_late_still_gets_the_whole_stream_after_the_town_closes(pki) -> None:
    """Closing never resets the connection: a slow TLS collector that reads only after close gets every line."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # most of the stream waits in the town's kernel
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    context, ready, go, received = (
        server_context(pki["server"], pki["server_key"]),
        threading.Event(),
        threading.Event(),
        bytearray(),
    )

    def collect() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as conn:  # the handshake sends TLS 1.3 session tickets
            ready.set()
            go.wait(60)
            while chunk := conn.recv(65536):
                received.extend(chunk)

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    transport = TcpTransport(
        TcpTransportConfig(
            kind="tcp", host="127.0.0.1", port=listener.getsockname()[1], ca_file=pki["ca"], connect_timeout=1.0
        )
    )
    sim = Simulation(seed=3)
    publisher = TelemetryPublisher(sim, transports=[transport]).attach()
    try:
        assert ready.wait(60)
        deadline = time.monotonic() + 60
        while not transport.outbox.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        sim.run(30)
    finally:
        publisher.close(timeout=60)
        go.set()
        reader.join(60)
        listener.close()
    lines = bytes(received).splitlines()
    assert orjson.loads(lines[0])["type"] == "snapshot" and orjson.loads(lines[0])["tick"] == 0
    assert transport.health()["sent"] == len(lines) >= 30 and orjson.loads(lines[-1])["tick"] == 29


def test_handshake_fails_with_an_unknown_ca(pki) -> None:
    """A certificate from a CA we do not trust is refused: nothing is sent, the error is in health."""
    collector = Collector(server_context(pki["stranger"], pki["stranger_key"]))
    try:
        transport, got = stream_over_tls(collector, pki["ca"], expect=False)
    finally:
        collector.close()
    assert got == []
    health = transport.health()
    assert not health["connected"] and "CERTIFICATE_VERIFY_FAILED" in health["last_error"]
    assert health["dropped"] > 0 and health["retry_streak"] >= 1


def test_handshake_fails_on_a_hostname_mismatch(pki) -> None:
    """The right CA but a name the certificate does not carry: refused."""
    collector = Collector(server_context(pki["server"], pki["server_key"]))
    try:
        transport, got = stream_over_tls(collector, pki["ca"], server_name="telemetry.example.org", expect=False)
    finally:
        collector.close()
    assert got == []
    assert "CERTIFICATE_VERIFY_FAILED" in transport.health()["last_error"]
    assert "hostname" in transport.health()["last_error"].lower()


def test_handshake_fails_with_an_expired_certificate(pki) -> None:
    """Signed by our CA for the right host, but expired: refused."""
    collector = Collector(server_context(pki["expired"], pki["expired_key"]))
    try:
        transport, got = stream_over_tls(collector, pki["ca"], expect=False)
    finally:
        collector.close()
    assert got == []
    assert "expired" in transport.health()["last_error"].lower()


def test_client_certificates_for_a_collector_that_requires_them(pki) -> None:
    """Mutual TLS: with our client certificate the stream flows; without it the collector refuses."""
    requiring = server_context(pki["server"], pki["server_key"], ca_file=pki["ca"])
    collector = Collector(requiring)
    try:
        _, got = stream_over_tls(collector, pki["ca"], cert=pki["client"], key=pki["client_key"])
        assert got and got[0]["type"] == "snapshot"
        subject = dict(pair[0] for pair in collector.peer_certs[0]["subject"])
        assert subject["commonName"] == "sim-1"
    finally:
        collector.close()
    collector = Collector(server_context(pki["server"], pki["server_key"], ca_file=pki["ca"]))
    try:
        _, got = stream_over_tls(collector, pki["ca"], ticks=10, expect=False)
    finally:
        collector.close()
    assert got == [] and collector.handshake_errors


def test_verification_and_hostname_checks_are_on_by_default() -> None:
    """The client context requires a certificate and checks the host name; TLS 1.2 at least."""
    ctx = client_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert TcpTransportConfig(kind="tcp", host="collector.example.org", port=9000).tls


def test_plaintext_to_a_non_loopback_host_is_refused_by_config_validation() -> None:
    """tls: false is accepted only with allow_plaintext and a loopback host; errors name the key path."""
    with pytest.raises(ConfigError) as err:
        load_config(
            overrides=[
                "telemetry.transports=[{kind: tcp, host: collector.example.org, port: 9000, "
                "tls: false, allow_plaintext: true}]"
            ]
        )
    assert "telemetry.transports.0" in str(err.value) and "loopback" in str(err.value)
    with pytest.raises(ConfigError, match="loopback"):
        load_config(
            overrides=[
                "telemetry.transports=[{kind: tcp, host: 10.1.2.3, port: 9000, tls: false, allow_plaintext: true}]"
            ]
        )
    for host in ("127.0.0.1", "localhost", "::1", "127.8.9.10"):
        ok = load_config(
            overrides=[
                f"telemetry.transports=[{{kind: tcp, host: '{host}', port: 9000, tls: false, allow_plaintext: true}}]"
            ]
        )
        assert ok.config.telemetry.transports[0].tls is False


def test_websocket_over_tls_verifies_with_our_ca(pki, tmp_path: Path) -> None:
    """A wss:// viewer trusting our CA gets the snapshot; one trusting nothing of ours is refused."""
    ws = WebSocketTransport(
        WebSocketTransportConfig(kind="websocket", port=0, cert_file=pki["server"], key_file=pki["server_key"])
    )
    sim = Simulation(seed=1)
    publisher = TelemetryPublisher(sim, transports=[ws]).attach()
    try:
        assert ws.url.startswith("wss://127.0.0.1:")
        with connect(ws.url, ssl=client_context(pki["ca"]), max_queue=None) as viewer:
            deadline = time.monotonic() + 5
            while ws.health()["clients"] < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            sim.run(3)
            first = orjson.loads(viewer.recv(timeout=5))
            assert first["type"] == "snapshot"
        with pytest.raises(ssl.SSLCertVerificationError):
            connect(ws.url, ssl=client_context(), open_timeout=5)
    finally:
        publisher.close()

"""Test support for telemetry: a loopback collector (plain or TLS) and certificates made on the fly."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from pathlib import Path

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


class Collector:
    """A loopback TCP server that accepts telemetry connections one at a time and keeps every line.

    ``reading`` can be cleared to stop reading (a stalled consumer) and set again to resume.
    """

    def __init__(self, context: ssl.SSLContext | None = None, rcvbuf: int = 0, port: int = 0) -> None:
        self.context = context
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(4)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lines: list[bytes] = []
        self.connections = 0
        self.handshake_errors: list[str] = []
        self.peer_certs: list[dict] = []
        self.reading = threading.Event()
        self.reading.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            if self.context is not None:
                try:
                    conn.settimeout(5)
                    conn = self.context.wrap_socket(conn, server_side=True)
                    self.peer_certs.append(conn.getpeercert() or {})
                except (ssl.SSLError, OSError) as exc:
                    self.handshake_errors.append(str(exc))
                    conn.close()
                    continue
            self.connections += 1
            self._read(conn)

    def _read(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        pending = b""
        with conn:
            while not self._stop.is_set():
                if not self.reading.is_set():
                    time.sleep(0.01)
                    continue
                try:
                    data = conn.recv(65536)
                except (TimeoutError, ssl.SSLWantReadError):
                    continue
                except OSError:
                    return
                if not data:
                    return
                pending += data
                *complete, pending = pending.split(b"\n")
                with self._lock:
                    self.lines.extend(complete)

    def messages(self) -> list[dict]:
        """Every complete line received so far, parsed."""
        with self._lock:
            return [orjson.loads(line) for line in self.lines]

    def wait_for(self, predicate, timeout: float = 60.0) -> bool:
        """Wait until ``predicate(messages)`` holds (at most ``timeout`` s: a loaded machine is slow, not broken)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.messages()):
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Stop accepting and reading."""
        self._stop.set()
        self.reading.set()
        self._thread.join(5)
        self.sock.close()


def free_port() -> int:
    """A loopback port nobody listens on (for a dead collector)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_ca(common: str = "Townlet Test CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_cert(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    common: str = "localhost",
    dns: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
    expired: bool = False,
    client: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A leaf certificate signed by ``ca`` (server by default, or a client certificate)."""
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=10), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(hours=1), now + dt.timedelta(days=7))
    )
    names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if names:  # cryptography >= 51 refuses an empty SubjectAlternativeName (a client certificate has none)
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = (
        builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def write_pem(
    folder: Path, name: str, key: ec.EllipticCurvePrivateKey | None, cert: x509.Certificate
) -> tuple[str, str]:
    """Write ``name.crt`` (and ``name.key``); returns their paths."""
    crt = folder / f"{name}.crt"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = folder / f"{name}.key"
    if key is not None:
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return str(crt), str(key_path)

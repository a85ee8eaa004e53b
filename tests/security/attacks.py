"""Hostile clients against a live ``townlet serve``: the attacks the security tests and ``tools/attack_figures.py`` run.

Each attack is a plain function over a :class:`Target` (a running server: URL, process id, tokens) that
returns what it measured. :func:`during` runs an attack while sampling the town's tick from ``/healthz``, so
every caller can show that the town kept ticking (and at what rate) while it was under attack.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil


@dataclass
class Target:
    """A running server under attack.

    Attributes:
        url: Its base URL (``http://127.0.0.1:PORT``).
        pid: Its process id (for RSS).
        admin: An admin token.
        viewer: A viewer token.
    """

    url: str
    pid: int
    admin: str
    viewer: str

    @property
    def port(self) -> int:
        """The TCP port."""
        return int(urlsplit(self.url).port or 80)

    def connect(self, timeout: float = 5.0) -> socket.socket:
        """A raw TCP connection to the server."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def health(self) -> dict[str, Any]:
        """``GET /healthz``."""
        return httpx.get(f"{self.url}/healthz", timeout=10).json()

    def command(
        self, token: str | None, cmd: str, headers: dict[str, str] | None = None, **args: Any
    ) -> tuple[int, dict[str, Any]]:
        """``POST /api/console``; returns the status and the body."""
        h = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx.post(
            f"{self.url}/api/console", json={"cmd": cmd, "args": args}, headers={**h, **(headers or {})}, timeout=30
        )
        return answer.status_code, answer.json()

    def rss(self) -> int:
        """The server's resident memory (with any worker processes it started), in bytes."""
        try:
            server = psutil.Process(self.pid)
            return sum(p.memory_info().rss for p in [server, *server.children(recursive=True)])
        except psutil.Error:
            return 0


@dataclass
class Ticking:
    """How the town ticked during an attack.

    Attributes:
        ticks: Ticks simulated during it.
        seconds: How long it lasted.
        nominal: Ticks per second the pace asks for.
    """

    ticks: int
    seconds: float
    nominal: float

    @property
    def ratio(self) -> float:
        """The tick rate during the attack over the nominal rate."""
        return self.ticks / self.seconds / self.nominal if self.seconds > 0 else 0.0


def during(target: Target, nominal: float, attack: Callable[[], Any], min_s: float = 0.0) -> tuple[Any, Ticking]:
    """Run ``attack`` (at least ``min_s`` seconds of wall time); returns its result and how the town ticked."""
    start_tick, start = target.health()["tick"], time.monotonic()
    result = attack()
    rest = min_s - (time.monotonic() - start)
    if rest > 0:
        time.sleep(rest)
    end_tick, end = target.health()["tick"], time.monotonic()
    return result, Ticking(end_tick - start_tick, end - start, nominal)


def status_of(sock: socket.socket) -> str:
    """The status code of the next HTTP answer on ``sock`` ('closed' / 'none' when there is none)."""
    try:
        line = sock.recv(256).split(b"\r\n", 1)[0].decode("latin-1")
    except (TimeoutError, OSError):
        return "none"
    return line[9:12] if line.startswith("HTTP/1.") else "closed"


def oversized_header(target: Target, size: int) -> str:
    """One request whose head carries a ``size``-byte header; returns the answer's status."""
    with target.connect() as s:
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
        except OSError:
            pass
        return status_of(s)


def huge_headers(target: Target, clients: int = 4, megabytes: int = 32) -> dict[str, Any]:
    """``clients`` concurrent requests each streaming a ``megabytes`` MB header: answers and peak RSS growth."""
    base = target.rss()
    peak = [base]
    answers: list[str] = []
    done = threading.Event()

    def one() -> None:
        with target.connect(30.0) as s:
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
                chunk = b"a" * 65536
                for _ in range(megabytes * 16):
                    s.sendall(chunk)
                s.sendall(b"\r\n\r\n")
            except OSError:
                pass
            answers.append(status_of(s))

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], target.rss())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    time.sleep(0.3)
    done.set()
    sampler.join()
    return {"answers": sorted(answers), "rss_growth_mb": round((peak[0] - base) / 2**20, 2)}


def closed_after(sock: socket.socket, limit_s: float, trickle: bytes = b"") -> float:
    """Seconds until the server closes ``sock`` (sending ``trickle`` every 0.25 s meanwhile); ``limit_s`` if never."""
    start = time.monotonic()
    sock.settimeout(0.25)
    while time.monotonic() - start < limit_s:
        try:
            if trickle:
                sock.sendall(trickle)
            if not sock.recv(4096):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return limit_s


def slow_headers(target: Target, count: int, limit_s: float) -> list[float]:
    """``count`` connections each trickling a head forever; seconds until each was cut off."""
    socks = [target.connect() for _ in range(count)]
    for s in socks:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    out: list[float] = []
    threads = [threading.Thread(target=lambda s=s: out.append(closed_after(s, limit_s, b"X-A: b\r\n"))) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in socks:
        s.close()
    return out


def stalled_viewer(target: Target, path: str = "/ws/telemetry") -> socket.socket:
    """A WebSocket viewer that completes the handshake and then never reads (the caller closes it)."""
    key = base64.b64encode(os.urandom(16)).decode()
    s = target.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    s.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = s.recv(512)
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    return s


def viewers(target: Target) -> int:
    """Viewers connected now (``/healthz``)."""
    return int(target.health()["viewers"])


def wait_for(predicate: Callable[[], bool], limit_s: float, step: float = 0.1) -> float | None:
    """Seconds until ``predicate()`` holds, or None after ``limit_s``."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def refused_flood(target: Target, requests: int, arg_bytes: int) -> dict[str, Any]:
    """``requests`` refused viewer commands with ``arg_bytes``-byte arguments; returns the status counts.

    The requests cycle through an admin command, an unknown command and a reused ``cmd_id``.
    """
    big = "x" * arg_bytes
    statuses: dict[int, int] = {}
    with httpx.Client(timeout=30) as client:
        headers = {"Authorization": f"Bearer {target.viewer}"}
        for i in range(requests):
            kind = i % 3
            if kind == 0:
                payload: dict[str, Any] = {"cmd": "narrate", "args": {"text": big}}
            elif kind == 1:
                payload = {"cmd": "no_such_command", "args": {"place": big}}
            else:
                payload = {"cmd": "agent", "args": {"agent": big}, "cmd_id": "same"}
            code = client.post(f"{target.url}/api/console", content=json.dumps(payload), headers=headers).status_code
            statuses[code] = statuses.get(code, 0) + 1
    return statuses

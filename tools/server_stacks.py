"""Measure which Python server stack enforces the limits the live server needs; prints one JSON object.

Each stack serves the same tiny ASGI app (``GET /`` answers ``ok``, ``GET /stats`` counts open WebSockets,
``WS /ws`` streams 16 KB messages every 10 ms) in a child process, configured with the closest settings it
offers to: request heads of at most 16 KB, 5 s to send a head, 5 s idle, 100 connections, WebSocket pings
every 2 s with a 5 s pong deadline. Then the same probes run against each:

- ``header_100k``: the answer to one request with a 100 KB header (431 wanted);
- ``header_32mb``: four concurrent requests streaming a 32 MB header: the answers and the child's RSS growth;
- ``slow_header_s``: seconds until a head trickling one header line a second is cut off (30 = never);
- ``idle_s``: seconds until a connection that sends nothing is closed (30 = never);
- ``cap_150``: 150 connections sending a request each at once: how many got 200, 503, or nothing;
- ``stalled_ws_s``: seconds until the server drops a WebSocket peer that never reads (30 = never).

Run: ``.venv/bin/pip install -e ".[stacks]"`` (hypercorn, granian), then
``.venv/bin/python tools/server_stacks.py [--only NAME ...]``. About two minutes per stack.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

STACKS = ("uvicorn-httptools", "uvicorn-h11", "hypercorn", "granian", "townlet")
NEVER = 30.0
OPEN_WS = [0]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The probe target (ASGI 3)."""
    import asyncio

    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":
        body = json.dumps({"ws": OPEN_WS[0]}).encode() if scope["path"] == "/stats" else b"ok"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    OPEN_WS[0] += 1
    try:
        chunk = "x" * 16384
        while True:
            await send({"type": "websocket.send", "text": chunk})
            await asyncio.sleep(0.01)
    except Exception:  # noqa: BLE001 - the peer is gone, however the stack says so
        pass
    finally:
        OPEN_WS[0] -= 1


def serve(stack: str, port: int) -> None:
    """Child process: serve ``app`` on ``port`` with ``stack``'s closest settings."""
    if stack.startswith("uvicorn") or stack == "townlet":
        import uvicorn

        if stack == "townlet":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
            from townlet.server.stack import Limits, StackConfig

            config: Any = StackConfig(app, Limits(16384, 5.0, 5.0, 100, 2.0, 5.0), port=port, log_level="error")
        elif stack == "uvicorn-httptools":
            config = uvicorn.Config(app, port=port, http="httptools", ws="websockets-sansio", log_level="error")
        else:
            config = uvicorn.Config(app, port=port, http="h11", ws="websockets-sansio", log_level="error",
                                    h11_max_incomplete_event_size=16384, timeout_keep_alive=5, limit_concurrency=100,
                                    ws_ping_interval=2.0, ws_ping_timeout=5.0)
        uvicorn.Server(config).run()
    elif stack == "hypercorn":
        import asyncio

        from hypercorn.asyncio import serve as hserve
        from hypercorn.config import Config

        cfg = Config()
        cfg.bind = [f"127.0.0.1:{port}"]
        cfg.h11_max_incomplete_size = 16384
        cfg.read_timeout = 5
        cfg.keep_alive_timeout = 5
        cfg.websocket_ping_interval = 2.0
        cfg.loglevel = "ERROR"
        asyncio.run(hserve(app, cfg))  # type: ignore[arg-type]
    else:
        from granian import Granian
        from granian.http import HTTP1Settings

        Granian("server_stacks:app", address="127.0.0.1", port=port, interface="asgi", http="1",  # type: ignore[arg-type]
                http1_settings=HTTP1Settings(header_read_timeout=5000, max_buffer_size=16384), backpressure=100,
                log_level="error", working_dir=Path(__file__).resolve().parent).serve()  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _status(sock: socket.socket) -> str:
    try:
        line = sock.recv(256).split(b"\r\n", 1)[0].decode("latin-1")
    except (TimeoutError, OSError) as exc:
        return f"no answer ({type(exc).__name__})"
    return line[9:12] if line.startswith("HTTP/1.") else ("closed" if not line else line[:20])


def header_100k(port: int) -> str:
    """The answer to a request whose head is 100 KB."""
    with _connect(port) as s:
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        except OSError:
            pass
        return _status(s)


def header_32mb(port: int, tree: psutil.Process) -> dict[str, Any]:
    """Four concurrent 32 MB heads: their answers and the server's RSS growth (MB, peak over the attack)."""
    base = _rss(tree)
    peak = [base]
    answers: list[str] = []
    done = threading.Event()

    def one() -> None:
        with _connect(port, 20.0) as s:
            try:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
                chunk = b"a" * 65536
                for _ in range(512):
                    s.sendall(chunk)
                s.sendall(b"\r\n\r\n")
            except OSError:
                pass
            answers.append(_status(s))

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss(tree))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done.set()
    sampler.join()
    return {"answers": sorted(answers), "rss_growth_mb": round((peak[0] - base) / 2**20, 1),
            "seconds": round(time.monotonic() - start, 1)}


def _until_closed(s: socket.socket, trickle: bool) -> float:
    start = time.monotonic()
    s.settimeout(1.0)
    while time.monotonic() - start < NEVER:
        try:
            if trickle:
                s.sendall(b"X-Slow: 1\r\n")
            data = s.recv(4096)
            if not data or data.startswith(b"HTTP/1.1 408") or data.startswith(b"HTTP/1.1 4"):
                return round(time.monotonic() - start, 1)
        except TimeoutError:
            continue
        except OSError:
            return round(time.monotonic() - start, 1)
    return NEVER


def slow_header_s(port: int) -> float:
    """Seconds until a head that trickles in (a header line a second) is cut off."""
    with _connect(port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        return _until_closed(s, trickle=True)


def idle_s(port: int) -> float:
    """Seconds until a connection that never sends anything is closed."""
    with _connect(port) as s:
        return _until_closed(s, trickle=False)


def cap_150(port: int) -> dict[str, int]:
    """150 connections at once, a request each: answers by kind."""
    socks = [_connect(port, 10.0) for _ in range(150)]
    try:
        for s in socks:
            try:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                pass
        counts: dict[str, int] = {}
        for s in socks:
            status = _status(s)
            counts[status] = counts.get(status, 0) + 1
        return counts
    finally:
        for s in socks:
            s.close()


def stalled_ws_s(port: int) -> float:
    """Seconds until the server drops a WebSocket peer that never reads what it is sent."""
    key = base64.b64encode(os.urandom(16)).decode()
    s = _connect(port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}"
              "\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = s.recv(1024)
    if not head.startswith(b"HTTP/1.1 101"):
        s.close()
        return -1.0
    start = time.monotonic()
    try:
        while time.monotonic() - start < NEVER:
            if _get(port, "/stats").get("ws") == 0:
                return round(time.monotonic() - start, 1)
            time.sleep(0.25)
        return NEVER
    finally:
        s.close()


def _get(port: int, path: str) -> dict[str, Any]:
    with _connect(port) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}")


def _rss(tree: psutil.Process) -> int:
    try:
        return tree.memory_info().rss + sum(c.memory_info().rss for c in tree.children(recursive=True))
    except psutil.Error:
        return 0


def measure(stack: str) -> dict[str, Any]:
    """Start ``stack`` in a child process and run every probe against it."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    child = subprocess.Popen([sys.executable, __file__, "--serve", stack, str(port)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(port, "/stats")
                break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    return {"error": "did not start"}
                time.sleep(0.2)
        tree = psutil.Process(child.pid)
        out: dict[str, Any] = {"header_100k": header_100k(port), "header_32mb": header_32mb(port, tree)}
        out["slow_header_s"] = slow_header_s(port)
        out["idle_s"] = idle_s(port)
        out["cap_150"] = cap_150(port)
        time.sleep(1)
        out["stalled_ws_s"] = stalled_ws_s(port)
        return out
    finally:
        child.kill()
        child.wait(10)


def main() -> int:
    """Measure the stacks named with ``--only`` (default: all) and print the results as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=list(STACKS), choices=STACKS)
    parser.add_argument("--serve", nargs=2, metavar=("STACK", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    results = {}
    for stack in args.only:
        print(f"server_stacks: measuring {stack}", file=sys.stderr, flush=True)
        results[stack] = measure(stack)
        print(f"server_stacks: {stack}: {json.dumps(results[stack])}", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

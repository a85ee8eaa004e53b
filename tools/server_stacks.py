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
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "security"))

from attacks import (  # noqa: E402 - the probes are the hostile tests' attacks
    Target,
    closed_after,
    huge_headers,
    oversized_header,
    stalled_viewer,
    status_of,
    wait_for,
)

STACKS = ("uvicorn-httptools", "uvicorn-h11", "hypercorn", "granian", "townlet")
NEVER = 30.0  # seconds: a limit not enforced within this is reported as never
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
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
            }
        )
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
            config = uvicorn.Config(
                app,
                port=port,
                http="h11",
                ws="websockets-sansio",
                log_level="error",
                h11_max_incomplete_event_size=16384,
                timeout_keep_alive=5,
                limit_concurrency=100,
                ws_ping_interval=2.0,
                ws_ping_timeout=5.0,
            )
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

        Granian(
            "server_stacks:app",
            address="127.0.0.1",
            port=port,
            interface="asgi",
            http="1",  # type: ignore[arg-type]
            http1_settings=HTTP1Settings(header_read_timeout=5000, max_buffer_size=16384),
            backpressure=100,
            log_level="error",
            working_dir=Path(__file__).resolve().parent,
        ).serve()  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connect(port: int, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def probe(target: Target) -> dict[str, Any]:
    """Every probe of the module docstring against a server on ``target``."""
    out: dict[str, Any] = {"header_100k": oversized_header(target, 100_000), "header_32mb": huge_headers(target)}
    with target.connect() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        out["slow_header_s"] = round(closed_after(s, NEVER, b"X-Slow: 1\r\n"), 1)
    with target.connect() as s:
        out["idle_s"] = round(closed_after(s, NEVER), 1)
    socks = [target.connect(10.0) for _ in range(150)]
    try:
        for s in socks:
            with contextlib.suppress(OSError):
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        statuses = [status_of(s) for s in socks]
        out["cap_150"] = {k: statuses.count(k) for k in sorted(set(statuses))}
    finally:
        for s in socks:
            s.close()
    time.sleep(1)
    stalled = stalled_viewer(target, "/ws")
    try:
        freed = wait_for(lambda: _get(target.port, "/stats").get("ws") == 0, NEVER, 0.25)
        out["stalled_ws_s"] = NEVER if freed is None else round(freed, 1)
    finally:
        stalled.close()
    return out


def _get(port: int, path: str) -> dict[str, Any]:
    with _connect(port) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1] or b"{}")


def measure(stack: str) -> dict[str, Any]:
    """Start ``stack`` in a child process and run every probe against it."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", stack, str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
        return probe(Target(f"http://127.0.0.1:{port}", child.pid, "", ""))
    finally:
        with contextlib.suppress(psutil.Error):  # granian's worker outlives its parent unless killed too
            for worker in psutil.Process(child.pid).children(recursive=True):
                worker.kill()
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

"""Viewers of the live stream: the transport they subscribe to, who may connect, and each one's send loop.

Every viewer has its own bounded outbox (:class:`~townlet.telemetry.outbox.Outbox`), filled by the tick
thread and emptied by that viewer's task on the server's event loop. A viewer gets every tick
as a diff, at most ``server.stream_rate`` a second; when the town ticks faster than that (100x, max) or
the viewer's connection is slow, what it missed is dropped (and counted) and it continues from fresh
snapshots, at most ``server.catch_up_rate`` a second, so no viewer can slow the town or grow the server's
memory, and the fan-out stays cheap at any speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import urlsplit

from townlet.config.models import WebSocketTransportConfig, is_loopback_host
from townlet.telemetry.outbox import Outbox
from townlet.telemetry.websocket import WebSocketTransport

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


class ViewerTransport(WebSocketTransport):
    """The WebSocket transport without a server of its own: the live server's endpoint subscribes viewers.

    Args:
        buffer_ticks: Ticks queued per viewer before it is dropped to a fresh snapshot.
    """

    def __init__(self, buffer_ticks: int) -> None:
        cfg = WebSocketTransportConfig(kind="websocket", name="viewers", tls=False, allow_plaintext=True,
                                       host="127.0.0.1", port=1, path="/ws/telemetry", buffer_ticks=buffer_ticks)
        super().__init__(cfg)
        self.public_url = ""

    @property
    def url(self) -> str:
        """Where viewers connect (set by the server once it listens)."""
        return self.public_url or self.cfg.path

    def start(self) -> None:
        """Nothing to start: the live server accepts the connections."""

    def close(self, timeout: float = 5.0) -> None:
        """Close every viewer's outbox (their send loops end)."""
        with self._lock:
            clients = list(self.clients)
        for outbox in clients:
            outbox.close()


def host_allowed(host_header: str | None, bound_host: str, allowed: list[str]) -> bool:
    """Whether a request's ``Host`` header names this server (a guard against DNS rebinding).

    With no ``allowed`` list, a server bound to loopback answers only to loopback names; one bound
    elsewhere answers to any name.
    """
    if not allowed and not is_loopback_host(bound_host):
        return True
    names = allowed or list(LOOPBACK_NAMES)
    if not host_header:
        return False
    if host_header.startswith("["):  # an IPv6 literal, maybe with a port
        host = host_header[: host_header.find("]") + 1]
    else:
        host = host_header.split(":", 1)[0]
    return host.lower() in names or host.strip("[]").lower() in names


def origin_allowed(origin: str | None, host_header: str | None, secure: bool, allowed: list[str]) -> bool:
    """Whether a browser page from ``origin`` may open the stream or call the API.

    Clients that send no ``Origin`` (the terminal dashboard, scripts) are not browsers and may connect;
    a page from the server itself (same scheme, host and port) may; other origins only when listed.
    """
    if origin is None:
        return True
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not host_header:
        return False
    if (parts.scheme == "https") != secure:
        return False
    default = 443 if parts.scheme == "https" else 80
    origin_netloc = parts.netloc if parts.port else f"{parts.hostname}:{default}"
    host_netloc = host_header if ":" in host_header.split("]")[-1] else f"{host_header}:{default}"
    return origin_netloc.lower() == host_netloc.lower()


class Viewer:
    """One connected viewer: its outbox and the task that sends what the outbox holds.

    Args:
        ws: The accepted WebSocket (Starlette).
        outbox: Its outbox on the viewer transport.
        rate: Updates per second at most while the viewer keeps up with every tick.
        catch_up_rate: Snapshots per second at most once it has fallen behind.
    """

    def __init__(self, ws: Any, outbox: Outbox, rate: float, catch_up_rate: float) -> None:
        self.ws = ws
        self.outbox = outbox
        self.gap = 1.0 / rate
        self.catch_up_gap = max(self.gap, 1.0 / catch_up_rate)
        self.wake = asyncio.Event()
        self.gone = False

    def poke(self) -> None:
        """Something was queued (called on the event loop once per tick)."""
        self.wake.set()

    async def run(self) -> None:
        """Send until the viewer leaves or the server stops; a stalled send only stalls this viewer."""
        listener = asyncio.create_task(self._listen())
        try:
            await self._send_loop()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener

    async def _listen(self) -> None:
        # Viewers have nothing to say; reading notices a closed connection while the town is paused.
        try:
            while True:
                message = await self.ws.receive()
                if message.get("type") == "websocket.disconnect":
                    break
        finally:
            self.gone = True
            self.wake.set()

    async def _send_loop(self) -> None:
        outbox, ws = self.outbox, self.ws
        last = 0.0
        gap = self.gap
        while not self.gone and not outbox.closed:
            item = outbox.take_nowait()
            if item is None:
                self.wake.clear()
                item = outbox.take_nowait()
                if item is None:
                    await self.wake.wait()
                    continue
            try:
                for line in item.data.splitlines():
                    await ws.send_text(line.decode())
            except Exception as exc:  # the connection went away mid-send
                outbox.send_failed(item, f"{type(exc).__name__}: {exc}")
                return
            outbox.sent_ok(item)
            wait = last + gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            last = time.monotonic()
            if len(outbox.queue) > 1:  # the town outpaces this viewer: skip ahead to a fresh snapshot
                outbox.resync()
                gap = self.catch_up_gap
            elif not item.snapshot:
                gap = self.gap  # keeping up with diffs again

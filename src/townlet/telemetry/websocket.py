"""WebSocket telemetry: a server that streams the telemetry lines to every connected viewer.

Each viewer gets its own :class:`~townlet.telemetry.outbox.Outbox` (so one slow browser tab loses only its
own messages) and starts with a fresh snapshot; every JSON line is one text frame. The server runs an
asyncio loop in a background thread; TLS (``wss``) unless plaintext on loopback is explicitly allowed.
The live server can instead drive :meth:`WebSocketTransport.subscribe` from its own endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from townlet.config.models import WebSocketTransportConfig
from townlet.logs import log_event
from townlet.telemetry.outbox import Batch, Outbox
from townlet.telemetry.tls import server_context
from townlet.telemetry.transports import Transport

log = logging.getLogger("townlet.telemetry")
TOTALS = ("offered", "sent", "dropped", "snapshots")


class WebSocketTransport(Transport):
    """Fan-out of the stream to WebSocket clients, one bounded outbox per client."""

    kind = "websocket"

    def __init__(self, cfg: WebSocketTransportConfig) -> None:
        super().__init__(cfg.name)
        self.cfg = cfg
        self.context = server_context(cfg.cert_file, cfg.key_file, cfg.ca_file) if cfg.tls and cfg.cert_file else None
        self.clients: list[Outbox] = []
        self._lock = threading.Lock()
        self._gone = dict.fromkeys(TOTALS, 0)  # counters of clients that left
        self._last_error = ""
        self._last_failure_tick = -1
        self._last_success_tick = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port = cfg.port

    @property
    def url(self) -> str:
        """Where viewers connect."""
        scheme = "wss" if self.context is not None else "ws"
        return f"{scheme}://{self.cfg.host}:{self.port}{self.cfg.path}"

    # -- the tick side ------------------------------------------------------------------------------

    def put(self, batch: Batch) -> None:
        """Offer one tick to every client's outbox."""
        with self._lock:
            clients = list(self.clients)
        for outbox in clients:
            outbox.put(batch)

    def wants(self) -> bool:
        """Only while at least one client is connected."""
        with self._lock:
            return bool(self.clients)

    def subscribe(self, notify: Callable[[], object] | None = None) -> Outbox:
        """Register a consumer (a live-server endpoint); it starts with a snapshot on the next tick."""
        outbox = Outbox(self.cfg.buffer_ticks, notify)
        outbox.set_connected(True)
        with self._lock:
            self.clients.append(outbox)
        return outbox

    def unsubscribe(self, outbox: Outbox) -> None:
        """Forget a consumer, keeping its counters in the totals."""
        outbox.close()
        with self._lock:
            if outbox in self.clients:
                self.clients.remove(outbox)
                for key in TOTALS:
                    self._gone[key] += getattr(outbox, key)
                self._last_success_tick = max(self._last_success_tick, outbox.last_success_tick)
                if outbox.last_error:
                    self._last_error = outbox.last_error
                    self._last_failure_tick = max(self._last_failure_tick, outbox.last_failure_tick)

    def counts(self) -> tuple[int, int]:
        """Offered and dropped messages over all clients, past and present."""
        with self._lock:
            clients = list(self.clients)
            offered, dropped = self._gone["offered"], self._gone["dropped"]
        return offered + sum(c.offered for c in clients), dropped + sum(c.dropped for c in clients)

    def health(self) -> dict[str, Any]:
        """Aggregated health: connected when any client is, the deepest queue, summed counters."""
        with self._lock:
            clients = list(self.clients)
            totals = dict(self._gone)
            last_error, last_failure = self._last_error, self._last_failure_tick
            last_success = self._last_success_tick
        each = [c.health() for c in clients]
        for h in each:
            last_error = h["last_error"] or last_error
            last_failure = max(last_failure, int(h["last_failure_tick"]))
        return {
            "kind": self.kind,
            "connected": bool(clients),
            "clients": len(clients),
            "queue_depth": max((int(h["queue_depth"]) for h in each), default=0),
            "queue_capacity": self.cfg.buffer_ticks,
            "sent": totals["sent"] + sum(c.sent for c in clients),
            "dropped": totals["dropped"] + sum(c.dropped for c in clients),
            "snapshots": totals["snapshots"] + sum(c.snapshots for c in clients),
            "retry_streak": 0,
            "last_error": last_error,
            "last_success_tick": max([last_success] + [int(h["last_success_tick"]) for h in each]),
            "last_failure_tick": last_failure,
            "url": self.url,
        }

    # -- the server side ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server thread and wait until it listens (the bound port is in ``port``)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._serve_forever, name=f"telemetry-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0):
            raise OSError(f"websocket telemetry server did not start: {self._last_error}")
        if self._server is None:
            raise OSError(f"websocket telemetry server did not start: {self._last_error}")

    def _serve_forever(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
            loop.run_forever()
        finally:
            loop.close()

    async def _listen(self) -> None:
        try:
            self._server = await serve(self._client, self.cfg.host, self.cfg.port, ssl=self.context)
            self.port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self.cfg.port
            log_event(log, "telemetry.listening", None, transport=self.name, url=self.url)
        except OSError as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            asyncio.get_running_loop().stop()
        finally:
            self._ready.set()

    async def _client(self, ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path.split("?")[0] != self.cfg.path:
            await ws.close(1008, "unknown path")
            return
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        outbox = self.subscribe(lambda: loop.call_soon_threadsafe(wake.set))
        gone = asyncio.ensure_future(ws.wait_closed())  # a viewer that leaves wakes us up too
        gone.add_done_callback(lambda _: wake.set())
        try:
            while not gone.done():
                wake.clear()
                item = outbox.take_nowait()
                if item is None:
                    await wake.wait()
                    if outbox.closed:
                        return
                    continue
                try:
                    for line in item.data.splitlines():
                        await ws.send(line.decode())
                except ConnectionClosed as exc:
                    outbox.send_failed(item, f"ConnectionClosed: {exc}")
                    return
                outbox.sent_ok(item)
        finally:
            gone.cancel()
            self.unsubscribe(outbox)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the server and drop every client."""
        loop, server = self._loop, self._server
        with self._lock:
            clients = list(self.clients)
        for outbox in clients:
            outbox.close()
        if loop is not None and server is not None and loop.is_running():

            async def stop() -> None:
                server.close()
                await server.wait_closed()
                loop.stop()

            asyncio.run_coroutine_threadsafe(stop(), loop)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

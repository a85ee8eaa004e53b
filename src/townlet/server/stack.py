"""The server stack under the app: uvicorn with h11, and the connection limits it does not enforce by itself.

Measured against the alternatives (``tools/server_stacks.py``; the figures and the reasons are in
docs/ops/security.md), plain uvicorn holds oversized headers, slow headers, idle sockets and stalled
WebSocket peers indefinitely. This module adds, per connection, before the app sees a request:

- a header size limit: a request head larger than ``server.max_header_bytes`` is answered ``431`` and the
  connection closed (h11 buffers at most that much);
- a header-read deadline: a request head must be complete ``server.header_timeout_s`` after the connection
  opened (or after the previous response), however slowly it trickles in; an idle connection is closed
  after ``server.idle_timeout_s`` between requests;
- a connection cap: past ``server.max_connections`` open connections a newcomer is answered ``503`` at once;
- a delivery deadline for WebSockets: every ``server.ws_ping_s`` seconds a ping goes out behind the data
  already queued; a peer whose pong is not back ``server.send_timeout_s`` later has stopped reading and is
  disconnected at once (the connection is aborted, not closed gracefully, which would wait forever for the
  queued data to drain), so a stalled viewer frees its slot at any speed. Each pong confirms the peer read
  every message written before its ping; the app finds these counts in the ``townlet.delivery`` scope
  extension (a :class:`Delivery`) and counts what was never confirmed as dropped when a peer is lost.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame
from websockets.http11 import Request

from townlet.config.models import ServerConfig

DELIVERY = "townlet.delivery"  # the ASGI scope extension holding a WebSocket's :class:`Delivery`

_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: 21\r\n\r\ntoo many connections\n"
)
_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 29\r\n\r\nrequest header fields too big\n"
)
_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: 27\r\n\r\nrequest header took too long\n"
)


@dataclass(frozen=True)
class Limits:
    """Connection limits of the live server (the ``server`` config section).

    Attributes:
        max_header_bytes: Largest request head (request line and headers), in bytes.
        header_timeout_s: Seconds a request head may take to arrive.
        idle_timeout_s: Seconds a connection may sit idle between requests.
        max_connections: Open connections at most (HTTP and WebSocket together).
        ws_ping_s: Seconds between WebSocket pings.
        send_timeout_s: Seconds a WebSocket peer has to read what was sent before a ping and answer it.
    """

    max_header_bytes: int = 16384
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 5.0
    max_connections: int = 1100
    ws_ping_s: float = 2.0
    send_timeout_s: float = 5.0

    @classmethod
    def from_config(cls, server: ServerConfig) -> Limits:
        """The limits of a ``server`` config section."""
        return cls(
            server.max_header_bytes,
            server.header_timeout_s,
            server.idle_timeout_s,
            server.max_connections,
            server.ws_ping_s,
            server.send_timeout_s,
        )


class StackConfig(uvicorn.Config):
    """A uvicorn config carrying the :class:`Limits` its protocols enforce.

    Args:
        app: The ASGI app.
        limits: The connection limits.
        **options: Further ``uvicorn.Config`` options (TLS files, ``ws_max_size``...).
    """

    def __init__(self, app: Any, limits: Limits, **options: Any) -> None:
        self.limits = limits
        super().__init__(
            app,
            http=GuardedHttp,
            ws=GuardedWebSocket,
            h11_max_incomplete_event_size=limits.max_header_bytes,
            timeout_keep_alive=limits.idle_timeout_s,  # type: ignore[arg-type]  # call_later takes any float
            ws_ping_interval=limits.ws_ping_s,
            ws_ping_timeout=limits.send_timeout_s,
            ws_per_message_deflate=False,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            lifespan="on",
            **options,
        )


class GuardedHttp(H11Protocol):
    """uvicorn's h11 protocol with a connection cap, a 431 for oversized heads and a header-read deadline."""

    refused = False
    head_timer: asyncio.TimerHandle | None = None
    head_seen = 0  # bytes of the request head received so far

    @property
    def limits(self) -> Limits:
        """The limits this connection is held to."""
        return self.config.limits  # type: ignore[attr-defined]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse past the connection cap; otherwise start the clock for the first request head."""
        if len(self.server_state.connections) >= self.limits.max_connections:
            self.refused = True
            transport.write(_503)
            transport.close()
            return
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection (nothing to do for one refused at the cap)."""
        self._stop_head_timer()
        if not self.refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed h11 unless the head grows too big (431); the head deadline stops once a whole head arrived."""
        if self.refused:
            return
        if self.conn.their_state is h11.IDLE and self._head_too_big(data):
            self._refuse_head()
            return
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._stop_head_timer()

    def on_response_complete(self) -> None:
        """The next request head (keep-alive) gets its own deadline."""
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """Hand the connection to the WebSocket protocol (which has its own deadline)."""
        self._stop_head_timer()
        super().handle_websocket_upgrade(event)

    def send_400_response(self, msg: str) -> None:
        """A head that outgrew ``max_header_bytes`` gets 431; any other malformed request 400."""
        if len(self.conn.trailing_data[0]) > self.limits.max_header_bytes:
            self._refuse_head()
            return
        super().send_400_response(msg)

    def _head_too_big(self, data: bytes) -> bool:
        # a head that arrives whole in one read is never buffered past h11's limit, so count it here too
        end = data.find(b"\r\n\r\n")
        size = self.head_seen + (end if end >= 0 else len(data))
        self.head_seen = 0 if end >= 0 else size
        return size > self.limits.max_header_bytes

    def _refuse_head(self) -> None:
        self._stop_head_timer()
        self.transport.write(_431)
        self.transport.close()

    def _await_head(self) -> None:
        self.head_seen = 0
        self._stop_head_timer()
        self.head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # part of a head arrived: say why; a silent idle socket just closes
            self.transport.write(_408)
        self.transport.close()


@dataclass
class Delivery:
    """Messages written to one WebSocket peer, and how many of them it has confirmed reading.

    Attributes:
        written: Messages written to the connection so far.
        confirmed: Messages written before the last ping the peer answered (it has read them all).
        at_ping: Messages written before the ping awaiting its pong.
    """

    written: int = 0
    confirmed: int = 0
    at_ping: int = 0


class GuardedWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, but a peer that misses its pong deadline is disconnected at once.

    It also counts what the peer confirmed reading (a :class:`Delivery` in the ``townlet.delivery`` scope
    extension), so the app knows what a lost peer never got.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delivery = Delivery()

    def handle_connect(self, event: Request) -> None:
        """Accept the handshake as uvicorn does; the app (not started yet) finds :attr:`delivery` in its scope."""
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][DELIVERY] = self.delivery

    async def send(self, message: Any) -> None:
        """Send as uvicorn does, counting the messages written."""
        await super().send(message)
        if message["type"] == "websocket.send":
            self.delivery.written += 1

    def send_keepalive_ping(self) -> None:
        """Ping behind what was written so far: its pong confirms all of it was read."""
        self.delivery.at_ping = self.delivery.written
        super().send_keepalive_ping()

    def handle_pong(self, event: Frame) -> None:
        """The pong of the ping in flight confirms everything written before that ping."""
        if self.pending_ping_payload is not None and bytes(event.data) == self.pending_ping_payload:
            self.delivery.confirmed = self.delivery.at_ping
        super().handle_pong(event)

    def keepalive_timeout(self) -> None:
        """Fail the connection and abort it: a graceful close would wait for data the peer never reads."""
        super().keepalive_timeout()
        self.transport.abort()


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (IPv4 or IPv6), ready for the server to listen on."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock

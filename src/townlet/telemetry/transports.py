"""Telemetry transports behind one interface: stdout, rotating JSONL files, and TCP with TLS.

Each transport owns one :class:`~townlet.telemetry.outbox.Outbox` and one background sender thread, so a
slow disk, a full pipe or a dead collector never blocks the tick: the outbox drops and counts instead.
Network transports reconnect with exponential backoff and start every connection with a snapshot.
The WebSocket transport (many viewers, one outbox each) lives in :mod:`townlet.telemetry.websocket`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, BinaryIO

from townlet.config.models import (
    FileTransportConfig,
    StdoutTransportConfig,
    TcpTransportConfig,
    TelemetryTransportBase,
    WebSocketTransportConfig,
)
from townlet.logs import log_event
from townlet.telemetry.outbox import Batch, Item, Outbox
from townlet.telemetry.tls import client_context

log = logging.getLogger("townlet.telemetry")
POLL_S = 0.02  # a sender looks for queued ticks this often (or sooner, when a backlog builds up)


class Transport(ABC):
    """Where telemetry goes. The publisher calls :meth:`put` once per tick from the tick thread."""

    kind = "?"

    def __init__(self, name: str = "") -> None:
        self.name = name or self.kind

    @abstractmethod
    def put(self, batch: Batch) -> None:
        """Hand over one tick; must return at once."""

    def wants(self) -> bool:
        """Whether anyone may receive this tick (False lets the publisher skip encoding)."""
        return True

    @abstractmethod
    def counts(self) -> tuple[int, int]:
        """Cumulative ``(offered, dropped)`` messages, for the drop rate."""

    @abstractmethod
    def health(self) -> dict[str, Any]:
        """Queue depth, dropped, retry streak, last error, connected, last success/failure ticks."""

    def start(self) -> None:  # noqa: B027 - optional hook
        """Start background work (called when the publisher attaches)."""

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued has been written; False on timeout."""
        return True

    def close(self, timeout: float = 5.0) -> None:  # noqa: B027 - optional hook
        """Stop background work, flushing what can be flushed within ``timeout``."""


class StreamTransport(Transport):
    """A transport with one outbox and one sender thread writing to one byte stream.

    Subclasses implement :meth:`_open` (connect; raise ``OSError`` to retry with backoff), :meth:`_write`
    and :meth:`_disconnect`.
    """

    local = False  # a file or a pipe: opened synchronously when the transport starts

    def __init__(self, name: str = "", buffer_ticks: int = 256, backoff: tuple[float, float] = (0.25, 30.0)) -> None:
        super().__init__(name)
        self.outbox = Outbox(buffer_ticks)
        self.backoff = backoff
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def put(self, batch: Batch) -> None:
        """Queue (or drop) one tick."""
        self.outbox.put(batch)

    def counts(self) -> tuple[int, int]:
        """Cumulative offered and dropped messages."""
        return self.outbox.offered, self.outbox.dropped

    def health(self) -> dict[str, Any]:
        """This transport's health counters."""
        return {"kind": self.kind, **self.outbox.health()}

    def start(self) -> None:
        """Open local streams at once (so the first tick is not lost), then start the sender thread."""
        if self.local and not self.outbox.connected:
            try:
                self._open()
                self.outbox.set_connected(True)
            except OSError:
                pass  # the sender thread retries with backoff and reports the error
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"telemetry-{self.name}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        delay = self.backoff[0]
        while not self._stop.is_set():
            if not self.outbox.connected:
                try:
                    self._open()
                except OSError as exc:
                    self._failed(None, exc)
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.backoff[1])
                    continue
                delay = self.backoff[0]
                self.outbox.set_connected(True)
                log_event(log, "telemetry.connected", self.outbox.tick, transport=self.name, kind=self.kind)
            item = self.outbox.take_all(timeout=POLL_S)
            if item is None:
                continue
            try:
                self._write(item)
            except (OSError, ValueError) as exc:
                self._failed(item, exc)
                continue
            self.outbox.sent_ok(item)
        self._disconnect()

    def _failed(self, item: Item | None, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        first = self.outbox.retry_streak == 0
        self.outbox.send_failed(item, message)
        self._disconnect()
        if first:  # one warning per failure streak, not one per retry
            log_event(
                log, "telemetry.send_failed", self.outbox.tick, logging.WARNING, transport=self.name, error=message
            )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the outbox is empty and nothing is in flight (while connected)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outbox.idle() or not self.outbox.connected:
                return self.outbox.idle()
            time.sleep(0.005)
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Flush, stop the thread, close the stream; what could not be sent within ``timeout`` counts as dropped."""
        if self._thread is not None and self.outbox.connected:
            self.flush(timeout)
        self._stop.set()
        self.outbox.close()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.outbox.resync()  # what is still queued was never sent: counted as dropped

    def _interrupt(self) -> None:  # noqa: B027 - optional hook
        """Unblock a sender stuck in a write (network transports shut their socket down)."""

    @abstractmethod
    def _open(self) -> None:
        """Open or connect the stream (raise ``OSError`` to retry later)."""

    @abstractmethod
    def _write(self, item: Item) -> None:
        """Write one item completely (raise ``OSError`` on failure)."""

    @abstractmethod
    def _disconnect(self) -> None:
        """Close the stream (idempotent)."""


class StdoutTransport(StreamTransport):
    """Newline-delimited JSON on standard output (or any binary stream)."""

    kind = "stdout"
    local = True

    def __init__(self, name: str = "", buffer_ticks: int = 256, stream: BinaryIO | None = None) -> None:
        super().__init__(name, buffer_ticks)
        self.stream = stream

    def _open(self) -> None:
        if self.stream is None:
            self.stream = sys.stdout.buffer

    def _write(self, item: Item) -> None:
        assert self.stream is not None
        self.stream.write(item.data)
        self.stream.flush()

    def _disconnect(self) -> None:
        pass


class FileTransport(StreamTransport):
    """A JSONL file, rotated by size: ``PATH`` is current, ``PATH.1`` … ``PATH.N`` are older.

    Every file starts with a snapshot, so each one can be replayed on its own: when the bytes handed to the
    current file pass ``max_bytes``, the next tick goes out as a snapshot that opens the next file.
    """

    kind = "file"
    local = True

    def __init__(
        self,
        path: str | Path,
        name: str = "",
        buffer_ticks: int = 256,
        max_bytes: int = 0,
        backups: int = 3,
        append: bool = False,
    ) -> None:
        super().__init__(name, buffer_ticks)
        self.path = Path(path).expanduser()
        self.max_bytes = max_bytes
        self.backups = backups
        self.append = append
        self.rotations = 0
        self._file: BinaryIO | None = None
        self._size = 0
        self._segment = 0  # bytes handed to the current file (tick thread's estimate)

    def put(self, batch: Batch) -> None:
        """Queue one tick; past ``max_bytes`` it goes out as the snapshot that starts the next file."""
        fresh = bool(self.max_bytes) and self._segment >= self.max_bytes
        self.outbox.put(batch, fresh=fresh)
        self._segment = len(batch.snapshot()) if fresh else self._segment + len(batch.diff)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab" if self.append else "wb")  # noqa: SIM115 - closed in _disconnect
        self.append = True  # reopening after a failure must not truncate
        self._size = self._file.tell()

    def _write(self, item: Item) -> None:
        assert self._file is not None
        if item.fresh and self._size:
            self._rotate()
        self._file.write(item.data)
        self._file.flush()
        self._size += len(item.data)

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        if self.backups:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in _disconnect
        self._size = 0
        self.rotations += 1

    def _disconnect(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def health(self) -> dict[str, Any]:
        """Health plus the file path and rotation count."""
        return {**super().health(), "path": str(self.path), "rotations": self.rotations}


class TcpTransport(StreamTransport):
    """Newline-delimited JSON to a collector over TCP; TLS with verification unless plaintext is allowed.

    Plaintext to non-loopback hosts is refused by config validation (and here, for direct use).
    """

    kind = "tcp"

    def __init__(self, cfg: TcpTransportConfig) -> None:
        super().__init__(cfg.name, cfg.buffer_ticks, cfg.backoff)
        self.cfg = cfg
        self.context = client_context(cfg.ca_file, cfg.cert_file, cfg.key_file) if cfg.tls else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def _open(self) -> None:
        cfg = self.cfg
        sock = socket.create_connection((cfg.host, cfg.port), timeout=cfg.connect_timeout)
        try:
            if cfg.send_buffer:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, cfg.send_buffer)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=cfg.server_name or cfg.host)
            sock.settimeout(None)  # writes block in this thread only; close() shuts the socket to unblock
        except (OSError, ValueError):
            sock.close()
            raise
        with self._lock:
            self._sock = sock

    def _write(self, item: Item) -> None:
        sock = self._sock
        if sock is None:
            raise ConnectionError("not connected")
        sock.sendall(item.data)

    def _disconnect(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            self._goodbye(sock)

    def _goodbye(self, sock: socket.socket) -> None:
        """End the stream so that what was written still arrives, then close.

        Closing a socket that holds unread bytes (a TLS 1.3 server's session tickets, which this write-only
        client never reads) sends a reset, and the kernel discards whatever the collector has not taken in
        yet: a slow collector would lose the end of the stream. So half-close (the collector reads to the
        end), read and discard until the collector closes too (``connect_timeout`` at most), then close.
        """
        deadline = time.monotonic() + self.cfg.connect_timeout
        try:
            sock.shutdown(socket.SHUT_WR)  # (on a TLS socket this also ends TLS use: what follows is raw bytes)
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                if not sock.recv(65536):
                    break
        except (OSError, ValueError):
            pass  # already broken, or the collector kept it open: close anyway
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def _interrupt(self) -> None:
        """Cut off a sender stuck writing to a collector that stopped reading (what it held counts as dropped)."""
        with self._lock:
            sock = self._sock
        if sock is not None and not self.outbox.idle():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def health(self) -> dict[str, Any]:
        """Health plus the peer address and whether TLS is on."""
        return {**super().health(), "peer": f"{self.cfg.host}:{self.cfg.port}", "tls": self.cfg.tls}


def build_transport(cfg: TelemetryTransportBase) -> Transport:
    """A transport from its config entry."""
    if isinstance(cfg, StdoutTransportConfig):
        return StdoutTransport(cfg.name, cfg.buffer_ticks)
    if isinstance(cfg, FileTransportConfig):
        return FileTransport(cfg.path, cfg.name, cfg.buffer_ticks, cfg.max_bytes, cfg.backups)
    if isinstance(cfg, TcpTransportConfig):
        return TcpTransport(cfg)
    if isinstance(cfg, WebSocketTransportConfig):
        from townlet.telemetry.websocket import WebSocketTransport

        return WebSocketTransport(cfg)
    raise TypeError(f"unknown transport config {type(cfg).__name__}")

"""The telemetry sink: receives towns' streams over TCP (TLS unless plaintext on loopback) into JSONL files.

The counterpart of the ``tcp`` transport (``townlet telemetry collect``; the compose ``sink`` profile). Each
connection is written to its own file, ``town-<UTC time>.jsonl`` in the output directory, line by line as it
arrives. Every file can be replayed on its own (``townlet telemetry replay``): a connection starts with the
snapshot the transport sends, and when a file passes ``max_bytes`` the next one opens with a snapshot the sink
rebuilds from the stream (:class:`~townlet.telemetry.replay.StreamState`), so no message is lost to rotation.
Only the newest ``keep`` files are kept. What a client sends is parsed as JSON and written, never executed; a
line that is not a telemetry message, or longer than ``max_line`` bytes, closes that connection.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import ssl
import threading
from pathlib import Path
from typing import IO, Any

import orjson

from townlet.logs import log_event
from townlet.telemetry.replay import StreamState

log = logging.getLogger("townlet.telemetry")
MESSAGE_TYPES = (b"snapshot", b"diff", b"event")


class Sink:
    """A TCP(/TLS) server writing every telemetry connection to rotating JSONL files.

    Args:
        host: Address to listen on.
        port: Port (0 picks a free one; see :attr:`port`).
        out_dir: Directory of the files (created).
        context: Server TLS context (None: plaintext, which the CLI allows on loopback only).
        max_bytes: A file past this size is continued in a new one (0: never).
        keep: Files kept (oldest deleted first; 0: all).
        max_connections: Connections served at once; more are closed at once.
        max_line: Longest line accepted, in bytes.
        idle_s: A connection silent this long is closed (a paused town reconnects with a fresh snapshot).
    """

    def __init__(
        self,
        host: str,
        port: int,
        out_dir: str | Path,
        context: ssl.SSLContext | None = None,
        max_bytes: int = 0,
        keep: int = 0,
        max_connections: int = 4,
        max_line: int = 64 * 2**20,
        idle_s: float = 3600.0,
    ) -> None:
        self.out_dir = Path(out_dir).expanduser()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.context = context
        self.max_bytes = max_bytes
        self.keep = keep
        self.max_connections = max_connections
        self.max_line = max_line
        self.idle_s = idle_s
        self.sock = socket.create_server((host, port), reuse_port=False)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self.lines = 0
        self.refused = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # -- serving ------------------------------------------------------------------------------------

    def serve(self) -> None:
        """Accept connections until :meth:`close` (each is read in its own thread)."""
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                full = len(self._open) >= self.max_connections
                if not full:
                    self._open.add(conn)
            if full:
                self.refused += 1
                log_event(
                    log,
                    "telemetry.sink_refused",
                    None,
                    logging.WARNING,
                    peer=str(peer[0]),
                    reason=f"{self.max_connections} connections already",
                )
                conn.close()
                continue
            threading.Thread(target=self._serve_one, args=(conn, f"{peer[0]}:{peer[1]}"), daemon=True).start()

    def close(self) -> None:
        """Stop accepting, close every connection (their files are flushed and closed)."""
        self._stop.set()
        self.sock.close()
        with self._lock:
            for conn in list(self._open):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _serve_one(self, raw: socket.socket, peer: str) -> None:
        conn = raw
        try:
            raw.settimeout(10)
            if self.context is not None:
                conn = self.context.wrap_socket(raw, server_side=True)
            conn.settimeout(self.idle_s)  # a silent client does not hold a connection slot for ever
            self.connections += 1
            log_event(log, "telemetry.sink_connected", None, peer=peer)
            self._receive(conn, peer)
        except (OSError, ssl.SSLError) as exc:
            if not self._stop.is_set():
                log_event(log, "telemetry.sink_failed", None, logging.WARNING, peer=peer, error=str(exc))
        finally:
            with self._lock:
                self._open.discard(raw)
            conn.close()

    def _receive(self, conn: socket.socket, peer: str) -> None:
        reader = conn.makefile("rb")
        stream = StreamState()
        out: IO[bytes] | None = None
        size = 0
        try:
            while not self._stop.is_set():
                line = reader.readline(self.max_line + 1)
                if not line:
                    return
                if len(line) > self.max_line:
                    raise ValueError(f"a line longer than {self.max_line} bytes")
                if not line.endswith(b"\n"):
                    return  # the peer closed in the middle of a line
                message = self._message(line)
                stream.feed(message)
                if out is None or (
                    self.max_bytes
                    and size >= self.max_bytes
                    and stream.state is not None
                    and message["type"] != "event"
                ):
                    if out is not None:
                        out.close()
                    out, size = self._new_file(), 0
                    if message["type"] != "snapshot" and stream.state is not None:
                        line = orjson.dumps(stream.snapshot()) + b"\n"  # the state after this message
                out.write(line)
                out.flush()
                size += len(line)
                self.lines += 1
        except ValueError as exc:
            log_event(log, "telemetry.sink_refused", None, logging.WARNING, peer=peer, reason=str(exc))
        finally:
            if out is not None:
                out.close()
            reader.close()
            log_event(log, "telemetry.sink_closed", None, peer=peer)

    @staticmethod
    def _message(line: bytes) -> dict[str, Any]:
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ValueError("a line that is not JSON") from None
        if not isinstance(message, dict) or str(message.get("type", "")).encode() not in MESSAGE_TYPES:
            raise ValueError("a line that is not a telemetry message")
        return message

    def _new_file(self) -> IO[bytes]:
        with self._lock:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%f")
            path = self.out_dir / f"town-{stamp}.jsonl"
            n = 1
            while path.exists():
                n += 1
                path = self.out_dir / f"town-{stamp}-{n}.jsonl"
            handle = open(path, "xb")  # noqa: SIM115 - closed by the connection's reader
            if self.keep:
                for old in sorted(self.out_dir.glob("town-*.jsonl"))[: -self.keep]:
                    old.unlink(missing_ok=True)
        return handle

    def files(self) -> list[Path]:
        """The sink's files, oldest first."""
        return sorted(self.out_dir.glob("town-*.jsonl"))

"""Viewers of the live stream: one shared feed of recent ticks, a cursor per viewer, each viewer's send loop.

The tick thread appends each tick's :class:`~townlet.telemetry.outbox.Batch` to a :class:`Feed`, a ring of
the last ``server.viewer_buffer_ticks`` batches, once, whatever the number of viewers (a queue per viewer
would cost the tick thread one hand-over per viewer per tick). Every viewer reads the feed at its own pace
through a :class:`Cursor`, so each has its own bounded backlog: a viewer that falls further behind than
the ring holds loses what it missed (counted as dropped) and continues from a fresh snapshot.

A viewer gets every tick as a diff, at most ``server.stream_rate`` a second; when the town ticks faster
(100x, max) or its connection is slow, it skips ahead to fresh snapshots, at most ``server.catch_up_rate``
a second, and while every viewer does so the publisher skips encoding the ticks in between (:meth:`wants`).
No viewer can slow the town or grow the server's memory, and fan-out stays cheap at any speed. A viewport
viewer (``?view=viewport``, :mod:`townlet.server.viewport`) is sent its part of each tick instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from townlet.config.models import is_loopback_host
from townlet.console.errors import E_INVALID_ARG, E_RATE_LIMITED
from townlet.server.stack import DELIVERY
from townlet.server.viewport import Frame, ObjectIndex, RateLimit, ViewportError, ViewportFilter, parse_view_message
from townlet.telemetry.outbox import Batch, Item
from townlet.telemetry.transports import Transport

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
SNAPSHOT_PREFIX = b'{"type":"snapshot"'
STATES_KEPT = 8  # ticks a viewport viewer may lag behind before it continues from a fresh snapshot
FRAMES = ("message", "tick")  # ?frames= of WS /ws/telemetry: one text frame per message (default) or per tick


class Feed:
    """The last ``capacity`` published batches, by sequence number (written by one thread, read by many).

    Attributes:
        seq: The sequence number of the latest batch (-1 before the first).
        lines: Messages published so far (cumulative).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.slots: list[tuple[int, Batch, int] | None] = [None] * capacity  # (seq, batch, lines before it)
        self.seq = -1
        self.lines = 0

    def put(self, batch: Batch) -> None:
        """Append one batch (the slot is written before ``seq`` moves, so readers never see a half entry)."""
        seq = self.seq + 1
        self.slots[seq % self.capacity] = (seq, batch, self.lines)
        self.lines += batch.lines
        self.seq = seq

    def get(self, seq: int) -> tuple[int, Batch, int] | None:
        """The entry for ``seq``, or None once it has been overwritten."""
        entry = self.slots[seq % self.capacity]
        return entry if entry is not None and entry[0] == seq else None


class Cursor:
    """One viewer's position in the feed, with its health counters.

    Args:
        feed: The shared feed.
        counters: The transport's running totals (dropped is added to as this viewer skips).
    """

    def __init__(self, feed: Feed, counters: dict[str, int]) -> None:
        self.feed = feed
        self.totals = counters
        self.next: int | None = None  # None: the next item is a snapshot
        self.taken = -1  # the sequence number of the last item taken
        # A viewer that follows a town faster than it by snapshots wants no tick before this (monotonic) time,
        # and none while one it has not taken waits; 0: it wants every tick.
        self.rest_until = 0.0
        self.consumed: int | None = None  # feed lines up to what this viewer has received or skipped
        self.joined_lines = feed.lines
        self.start_after = feed.seq  # a newcomer's first snapshot is of a tick published after it came
        self.sent = 0
        self.dropped = 0
        self.coalesced = 0
        self.snapshots = 0
        self.skip_kind = "dropped"  # how the ticks skipped by the next snapshot are counted
        self.last_success_tick = -1
        self.last_failure_tick = -1
        self.last_error = ""
        self.closed = False

    def take(self) -> Item | None:
        """The next item to send (a diff that follows on, or a fresh snapshot), or None when up to date."""
        feed = self.feed
        latest = feed.seq
        if latest <= self.start_after or (self.next is not None and self.next > latest):
            return None
        entry = None if self.next is None else feed.get(self.next)
        snapshot = entry is None
        if snapshot:
            entry = feed.get(latest)
            if entry is None:
                return None
        seq, batch, before = entry  # type: ignore[misc]
        if snapshot:
            if self.consumed is not None and before > self.consumed:
                self._skip(before - self.consumed, self.skip_kind)
            self.skip_kind = "dropped"
            self.snapshots += 1
            self.totals["snapshots"] += 1
        self.next = seq + 1
        self.consumed = before + batch.lines
        self.taken = seq
        data = batch.snapshot() if snapshot else batch.diff
        # a tick published after unpublished ones is itself a snapshot (the publisher had no base to diff from)
        return Item(batch.tick, data, batch.lines, snapshot or data.startswith(SNAPSHOT_PREFIX))

    def backlog(self) -> int:
        """Ticks published that this viewer has not taken yet (at most what the ring holds)."""
        return 0 if self.next is None else min(self.feed.capacity, max(0, self.feed.seq - self.next + 1))

    def resync(self, coalesce: bool = False) -> None:
        """Skip what is waiting and continue from a fresh snapshot.

        Args:
            coalesce: The skipped ticks are folded into the snapshot because the town outpaces the viewer's
                update rate (counted as coalesced), not lost by a slow viewer (counted as dropped).
        """
        self.next = None
        self.skip_kind = "coalesced" if coalesce else "dropped"

    def sent_ok(self, item: Item) -> None:
        """``item`` went out."""
        self.sent += item.lines
        self.totals["sent"] += item.lines
        self.last_success_tick = item.tick

    def send_failed(self, item: Item, error: str) -> None:
        """``item`` was lost with the connection."""
        self._drop(item.lines)
        self.last_error = error
        self.last_failure_tick = item.tick

    def lost(self, error: str, unconfirmed: int = 0) -> None:
        """The connection failed (evicted, or gone without closing): what it never got counts as dropped.

        Args:
            error: Why.
            unconfirmed: Lines written to the connection that the viewer never confirmed reading.
        """
        if self.consumed is not None and self.feed.lines > self.consumed:
            self._drop(self.feed.lines - self.consumed)
            self.consumed = self.feed.lines
        if unconfirmed:
            self._drop(unconfirmed)
        self.last_error = self.last_error or error
        self.last_failure_tick = max(self.last_failure_tick, self.feed.seq)

    def _drop(self, lines: int) -> None:
        self._skip(lines, "dropped")

    def _skip(self, lines: int, kind: str) -> None:
        setattr(self, kind, getattr(self, kind) + lines)
        self.totals[kind] += lines

    def health(self) -> dict[str, Any]:
        """This viewer's counters."""
        return {
            "queue_depth": self.backlog(),
            "sent": self.sent,
            "dropped": self.dropped,
            "coalesced": self.coalesced,
            "snapshots": self.snapshots,
            "last_success_tick": self.last_success_tick,
            "last_failure_tick": self.last_failure_tick,
            "last_error": self.last_error,
        }


class ViewerTransport(Transport):
    """The telemetry transport of the live server's WebSocket viewers (``kind`` websocket, name ``viewers``).

    Args:
        buffer_ticks: Ticks a viewer may fall behind before it skips to a fresh snapshot.
    """

    kind = "websocket"

    def __init__(self, buffer_ticks: int) -> None:
        super().__init__("viewers")
        self.feed = Feed(buffer_ticks)
        # Viewport viewers: the full state and snapshot header of the last few ticks (kept by reference, set by
        # the tick thread, only while a viewport viewer is connected) and each tick's index, built by the first
        # viewport viewer that sends it. Few, since every state kept is many objects the garbage collector walks.
        self.source: Any = None  # the telemetry encoder (its ``state`` is the state of the batch being put)
        self.viewports = 0  # viewport viewers connected
        self.states: list[tuple[int, dict[str, Any], dict[str, Any]] | None] = [None] * STATES_KEPT
        self.frames: list[tuple[int, Frame] | None] = [None] * STATES_KEPT
        self.objects: ObjectIndex | None = None
        self.clients: list[Cursor] = []
        self.public_url = "/ws/telemetry"
        self.totals = {"sent": 0, "dropped": 0, "coalesced": 0, "snapshots": 0}
        self._gone_offered = 0
        self._joined_lines = 0  # sum of feed.lines at each present viewer's arrival
        self._lock = threading.Lock()
        self._last_error = ""
        self._last_failure_tick = -1

    @property
    def url(self) -> str:
        """Where viewers connect."""
        return self.public_url

    def put(self, batch: Batch) -> None:
        """Publish one tick to every viewer at once (constant time, whatever the number of viewers)."""
        source = self.source
        if self.viewports and source is not None and source.state is not None:  # references: nothing is built
            seq = self.feed.seq + 1
            header = {k: v for k, v in source.snapshot_message().items() if k != "state"}
            self.states[seq % STATES_KEPT] = (seq, source.state, header)
        self.feed.put(batch)

    def watch_viewport(self, joined: bool) -> None:
        """A viewport viewer joined (or left): the last ticks' states are kept while any is connected."""
        with self._lock:
            self.viewports += 1 if joined else -1
            if not self.viewports:
                self.states = [None] * STATES_KEPT
                self.frames = [None] * STATES_KEPT

    def frame(self, seq: int) -> tuple[Frame, ObjectIndex] | None:
        """The index of published tick ``seq`` for viewport viewers (built on first use), or None once gone.

        Called on the event loop only, so an index is built once whatever the number of viewport viewers.
        """
        slot = seq % STATES_KEPT
        memo = self.frames[slot]
        if memo is None or memo[0] != seq:
            entry, kept = self.feed.get(seq), self.states[slot]
            if entry is None or kept is None or kept[0] != seq:
                return None
            started = time.perf_counter()
            frame = Frame(entry[1], kept[1], kept[2])
            frame.built_s = time.perf_counter() - started
            memo = self.frames[slot] = (seq, frame)
            objects = kept[1]["objects"]
            if self.objects is None or len(self.objects.ids) != len(objects):
                self.objects = ObjectIndex(objects)
        assert self.objects is not None
        return memo[1], self.objects

    def wants(self) -> bool:
        """Whether a viewer will be sent this tick (False lets the publisher skip encoding it).

        A viewer that keeps up wants every tick. One that follows a faster town by a snapshot now and then
        (100x, max) wants only the first tick after its next snapshot is due: at 100x the town is then encoded
        about ``server.catch_up_rate`` times a second, not 400, whatever the number of viewers (their due
        times fall on one shared grid).
        """
        clients = self.clients
        if not clients:
            return False
        now, seq = time.monotonic(), self.feed.seq
        return any(c.rest_until == 0.0 or (c.rest_until <= now and seq <= c.taken) for c in tuple(clients))

    def subscribe(self) -> Cursor:
        """A new viewer: it starts with a snapshot of the latest tick."""
        cursor = Cursor(self.feed, self.totals)
        with self._lock:
            self.clients.append(cursor)
            self._joined_lines += cursor.joined_lines
        return cursor

    def unsubscribe(self, cursor: Cursor) -> None:
        """A viewer left; its messages stay in the totals."""
        cursor.closed = True
        with self._lock:
            if cursor in self.clients:
                self.clients.remove(cursor)
                self._joined_lines -= cursor.joined_lines
                self._gone_offered += self.feed.lines - cursor.joined_lines
                if cursor.last_error:
                    self._last_error = cursor.last_error
                    self._last_failure_tick = max(self._last_failure_tick, cursor.last_failure_tick)

    def counts(self) -> tuple[int, int]:
        """Messages offered to and dropped by viewers, past and present (constant time).

        Ticks coalesced into snapshots at speeds above a viewer's update rate are neither offered nor
        dropped: they were never meant to be sent one by one.
        """
        with self._lock:
            offered = self._gone_offered + len(self.clients) * self.feed.lines - self._joined_lines
        return offered - self.totals["coalesced"], self.totals["dropped"]

    def health(self) -> dict[str, Any]:
        """Viewers connected, the deepest backlog, and the totals."""
        with self._lock:
            clients = list(self.clients)
        each = [c.health() for c in clients]
        last_error, last_failure = self._last_error, self._last_failure_tick
        for h in each:
            last_error = h["last_error"] or last_error
            last_failure = max(last_failure, h["last_failure_tick"])
        return {
            "kind": self.kind,
            "connected": bool(clients),
            "clients": len(clients),
            "queue_depth": max((h["queue_depth"] for h in each), default=0),
            "queue_capacity": self.feed.capacity,
            "sent": self.totals["sent"],
            "dropped": self.totals["dropped"],
            "snapshots": self.totals["snapshots"],
            "retry_streak": 0,
            "last_error": last_error,
            "last_success_tick": max((h["last_success_tick"] for h in each), default=-1),
            "last_failure_tick": last_failure,
            "url": self.url,
        }

    def close(self, timeout: float = 5.0) -> None:
        """Tell every viewer's send loop to end."""
        with self._lock:
            clients = list(self.clients)
        for cursor in clients:
            cursor.closed = True


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
    try:
        parts = urlsplit(origin)
        port = parts.port  # raises on a malformed port
    except ValueError:  # a malformed Origin is not this server's page
        return False
    if parts.scheme not in ("http", "https") or not host_header or not parts.hostname:
        return False
    if (parts.scheme == "https") != secure:
        return False
    default = 443 if parts.scheme == "https" else 80
    origin_netloc = parts.netloc if port else f"{parts.hostname}:{default}"
    host_netloc = host_header if ":" in host_header.split("]")[-1] else f"{host_header}:{default}"
    return origin_netloc.lower() == host_netloc.lower()


@dataclass
class Viewport:
    """A viewport viewer's filter, with the limits on what it may ask.

    Attributes:
        transport: The viewer transport (its per-tick indexes).
        filter: What the viewer shows and holds.
        limit: View changes a second (``server.viewport_rate``).
        refusals: Refused view messages after which the viewer is disconnected (``server.viewport_refusals``).
        refused: Refused so far.
    """

    transport: ViewerTransport
    filter: ViewportFilter
    limit: RateLimit
    refusals: int
    refused: int = 0


class Viewer:
    """One connected viewer: its cursor and the task that sends what it has not seen yet.

    Args:
        ws: The accepted WebSocket (Starlette).
        cursor: Its cursor on the viewer transport's feed.
        rate: Updates per second at most while the viewer keeps up with every tick.
        catch_up_rate: Snapshots per second at most once it has fallen behind.
        behind_ticks: A backlog above this skips ahead; a smaller one (jitter) is caught up at ``rate``.
        per_tick: Send each tick (or snapshot) as one text frame of newline-separated messages (``?frames=tick``)
            instead of one frame per message: a large town's tick holds hundreds of events, and one send per
            message per viewer would cost the server more than the tick itself.
        viewport: Send only what lies in the viewer's viewport (``?view=viewport``); None: the whole town.
        interval: The town's seconds per tick at its pace (0: as fast as it can): when ticks are due faster than
            ``rate``, the viewer follows the town by snapshots at ``catch_up_rate`` at once, rather than
            following diffs until it falls behind (and so making the town encode every tick meanwhile).
    """

    def __init__(
        self,
        ws: Any,
        cursor: Cursor,
        rate: float,
        catch_up_rate: float,
        behind_ticks: int,
        per_tick: bool = False,
        viewport: Viewport | None = None,
        interval: Callable[[], float] | None = None,
    ) -> None:
        self.ws = ws
        self.per_tick = per_tick
        self.viewport = viewport
        self.interval = interval
        self.notes: deque[str] = deque(maxlen=8)  # error messages for this viewer, sent by the send loop
        self.refusal = ""  # why the server closes this connection (1008), when it does
        self.cursor = cursor
        self.gap = 1.0 / rate
        self.catch_up_gap = max(self.gap, 1.0 / catch_up_rate)
        self.behind_ticks = behind_ticks
        self.wake = asyncio.Event()
        self.gone = False
        self.close_code: int | None = None  # how the peer's side ended (1000/1001: it left on purpose)
        self.error = ""  # why a send failed
        # what the connection counts as written and confirmed read (absent outside our server stack)
        self.delivery = getattr(ws, "scope", {}).get("extensions", {}).get(DELIVERY)
        self.in_flight: deque[tuple[int, int]] = deque()  # (messages written up to an item, its lines), unconfirmed

    def poke(self) -> None:
        """Something was published (called on the event loop)."""
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
            if self.refusal:  # the server ends it: too many refused view messages
                with contextlib.suppress(Exception):
                    await self.ws.close(code=1008, reason=self.refusal)
            elif self.error or (self.gone and self.close_code not in (1000, 1001)):  # failed or evicted
                self.cursor.lost(self.error or f"connection lost (close code {self.close_code})", self._unconfirmed())

    def _in_view(self, item: Item) -> bytes | None:
        """What of ``item`` this viewport viewer is sent (None when its tick is gone from the ring)."""
        assert self.viewport is not None
        indexed = self.viewport.transport.frame(self.cursor.taken)
        if indexed is None:
            return None
        frame, objects = indexed
        return self.viewport.filter.render(frame, objects, item.snapshot)

    def _written(self, item: Item) -> None:
        """``item`` went out: it stays in flight until a pong confirms the viewer read it."""
        self.cursor.sent_ok(item)
        if self.delivery is None:
            return
        self.in_flight.append((self.delivery.written, item.lines))
        while self.in_flight and self.in_flight[0][0] <= self.delivery.confirmed:
            self.in_flight.popleft()

    def _unconfirmed(self) -> int:
        """Lines written but never confirmed read (a stalled viewer read none of what sits in the buffers)."""
        confirmed = self.delivery.confirmed if self.delivery is not None else 0
        return sum(lines for written, lines in self.in_flight if written > confirmed)

    async def _listen(self) -> None:
        # Reading notices a closed connection while the town is paused; a viewport viewer also says what it shows.
        try:
            while True:
                message = await self.ws.receive()
                if message.get("type") == "websocket.disconnect":
                    self.close_code = message.get("code")
                    break
                if self.viewport is not None and message.get("type") == "websocket.receive":
                    self._heard(message)
                    if self.refusal:
                        break
        finally:
            self.gone = True
            self.wake.set()

    def _heard(self, message: dict[str, Any]) -> None:
        """A message from a viewport viewer: a new view is applied (a fresh snapshot follows), a bad one refused."""
        assert self.viewport is not None
        viewport = self.viewport
        text = message.get("text")
        code = E_INVALID_ARG
        try:
            if not viewport.limit.take():
                code = E_RATE_LIMITED
                raise ViewportError(f"more than {viewport.limit.rate:g} view messages a second; this one is ignored")
            if text is None:
                raise ViewportError("view messages are text frames")
            rect, selected = parse_view_message(text)
        except ViewportError as exc:
            viewport.refused += 1
            if viewport.refused >= viewport.refusals:
                self.refusal = f"{viewport.refused} view messages refused; the last: {exc}"[:120]
            else:
                self.notes.append(orjson.dumps({"type": "error", "code": code, "message": str(exc)}).decode())
            self.wake.set()
            return
        viewport.filter.set_view(rect, selected)
        self.cursor.resync(coalesce=True)  # what now enters the view comes with a fresh snapshot, paused or not
        self.wake.set()

    async def _send_loop(self) -> None:
        cursor, ws = self.cursor, self.ws
        last = 0.0
        gap = self.gap
        while not self.gone and not cursor.closed:
            self.wake.clear()
            while self.notes:
                note = self.notes.popleft()
                try:
                    await ws.send_text(note)
                except Exception as exc:  # the connection went away
                    self.error = f"{type(exc).__name__}: {exc}"
                    return
            item = cursor.take()
            if item is None:
                await self.wake.wait()
                continue
            data = item.data if self.viewport is None else self._in_view(item)
            if data is None:  # its state is gone (or was not kept yet): continue from the next tick's snapshot
                cursor.resync()
                await self.wake.wait()
                continue
            started = time.monotonic()
            try:
                if self.per_tick:  # one frame per tick: its lines, newline-separated
                    await ws.send_text(data.decode().rstrip("\n"))
                else:
                    for line in data.splitlines():
                        await ws.send_text(line.decode())
            except Exception as exc:  # the connection went away mid-send (or was evicted while stalled)
                self.error = f"{type(exc).__name__}: {exc}"
                cursor.send_failed(item, self.error)
                return
            self._written(item)
            sending = time.monotonic() - started
            outpaced = self.interval is not None and self.interval() < self.gap and self.gap < self.catch_up_gap
            if outpaced:  # the town's pace is faster than this viewer's updates: follow it by snapshots
                gap = self.catch_up_gap
                cursor.resync(coalesce=True)
            # following by snapshots: nothing is wanted before the next is due (due times on a grid shared by all)
            coalescing = (item.snapshot or outpaced) and gap > self.gap
            cursor.rest_until = math.floor((last + gap) / gap) * gap if coalescing else 0.0
            wait = last + gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            last = time.monotonic()
            if outpaced:
                continue
            if cursor.backlog() > self.behind_ticks:  # fallen behind: skip ahead to a fresh snapshot
                # a quick send means the town outpaces the update rate (coalesce); a slow one, a slow viewer
                cursor.resync(coalesce=sending < self.gap)
                # still behind right after a fresh start: the town outpaces this viewer, so slow down
                gap = self.catch_up_gap if item.snapshot else self.gap
            elif not item.snapshot:
                gap = self.gap  # keeping up with diffs again

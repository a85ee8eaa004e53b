"""Per-consumer bounded queues: a slow consumer loses old messages, never blocks the tick, and resyncs.

The publisher hands every consumer one :class:`Batch` per tick (that tick's diff and event lines, with the
snapshot form built lazily). An :class:`Outbox` queues batches for one consumer's sender thread or task:

- a consumer that needs a base (just connected, or after losing messages) gets the snapshot form next,
  so what it receives can always be rebuilt into the exact state;
- when the queue is full, everything queued is dropped and counted, and the consumer resyncs with a
  fresh snapshot once its sender is free again (diffs are coalesced into that snapshot);
- while the sender is stuck writing (a consumer that stopped reading) or disconnected, new batches are
  dropped and counted at once, without building anything.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

WAKE_AT = 8  # queued ticks that wake a sleeping sender at once; smaller backlogs wait for its next poll


@dataclass(slots=True)
class Batch:
    """One tick of the stream, in its two forms.

    Attributes:
        tick: The tick published.
        diff: The diff line then the event lines (newline-terminated JSON).
        lines: How many messages ``diff`` holds.
        make_snapshot: Builds the snapshot form (snapshot line then event lines) on first use.
    """

    tick: int
    diff: bytes
    lines: int
    make_snapshot: Callable[[], bytes]
    _snapshot: bytes | None = field(default=None, repr=False)

    def snapshot(self) -> bytes:
        """The snapshot form (built once, shared by every consumer that needs it this tick)."""
        if self._snapshot is None:
            self._snapshot = self.make_snapshot()
        return self._snapshot


@dataclass(slots=True)
class Item:
    """A queued chunk of lines for one consumer."""

    tick: int
    data: bytes
    lines: int
    snapshot: bool
    fresh: bool = False  # starts a new segment (a rotated file)


class Outbox:
    """A bounded queue of :class:`Item` for one consumer, with health counters.

    Args:
        capacity: Ticks of messages held before the queue overflows.
        notify: Called (from the tick thread) after an item is queued; asyncio consumers wake on it.
    """

    def __init__(self, capacity: int, notify: Callable[[], object] | None = None) -> None:
        self.capacity = capacity
        self.notify = notify
        self.lock = threading.Condition()
        self.queue: deque[Item] = deque()
        self.connected = False
        self.in_flight = False
        self.needs_snapshot = True
        self.closed = False
        self.tick = -1
        self.offered = 0
        self.sent = 0
        self.dropped = 0
        self.snapshots = 0
        self.retry_streak = 0
        self.last_error = ""
        self.last_success_tick = -1
        self.last_failure_tick = -1

    def put(self, batch: Batch, fresh: bool = False) -> None:
        """Queue one tick for this consumer, or drop it (counted); never blocks on the consumer.

        ``fresh`` sends the snapshot form marked as the start of a new segment (file rotation).
        """
        with self.lock:
            self.tick = batch.tick
            self.offered += batch.lines
            if self.closed or not self.connected or (self.needs_snapshot and self.in_flight):
                self.dropped += batch.lines
                return
            if len(self.queue) >= self.capacity:
                self.dropped += batch.lines + sum(item.lines for item in self.queue)
                self.queue.clear()
                self.needs_snapshot = True
                return
            if self.needs_snapshot or fresh:
                self.needs_snapshot = False
                self.snapshots += 1
                self.queue.append(Item(batch.tick, batch.snapshot(), batch.lines, True, fresh))
            else:
                self.queue.append(Item(batch.tick, batch.diff, batch.lines, False))
            if len(self.queue) >= WAKE_AT or self.notify is not None:
                self.lock.notify()  # a polling sender finds smaller backlogs by itself (fewer thread wake-ups)
        self._wake()

    def _first(self, timeout: float | None) -> Item | None:
        """Under the lock: wait up to ``timeout`` for an item, take the first and mark it in flight."""
        if not self.queue and not self.closed:
            self.lock.wait(timeout)
        if not self.queue:
            return None
        self.in_flight = True
        return self.queue.popleft()

    def take(self, timeout: float | None = None) -> Item | None:
        """Next item for the sender (marks it in flight); None on timeout or when closed and empty."""
        with self.lock:
            return self._first(timeout)

    def take_all(self, timeout: float | None = None) -> Item | None:
        """The queued backlog joined into one item (one write), up to the next fresh segment; None on timeout."""
        with self.lock:
            first = self._first(timeout)
            if first is None:
                return None
            items = [first]
            while self.queue and not self.queue[0].fresh:  # a new file starts with its own write
                items.append(self.queue.popleft())
        if len(items) == 1:
            return items[0]
        first = items[0]
        return Item(
            items[-1].tick, b"".join(i.data for i in items), sum(i.lines for i in items), first.snapshot, first.fresh
        )

    def take_nowait(self) -> Item | None:
        """Next item without waiting (asyncio senders), marking it in flight."""
        with self.lock:
            if not self.queue:
                return None
            self.in_flight = True
            return self.queue.popleft()

    def sent_ok(self, item: Item) -> None:
        """The sender delivered ``item``."""
        with self.lock:
            self.in_flight = False
            self.sent += item.lines
            self.retry_streak = 0
            self.last_success_tick = item.tick

    def send_failed(self, item: Item | None, error: str) -> None:
        """The sender lost ``item`` (and its connection): count it and ask for a snapshot next time."""
        with self.lock:
            self.in_flight = False
            if item is not None:
                self.dropped += item.lines
            self.dropped += sum(queued.lines for queued in self.queue)
            self.queue.clear()
            self.connected = False
            self.needs_snapshot = True
            self.retry_streak += 1
            self.last_error = error
            self.last_failure_tick = self.tick

    def set_connected(self, connected: bool) -> None:
        """A fresh connection starts from a snapshot; stale queued diffs are dropped."""
        with self.lock:
            if connected and not self.connected:
                self.dropped += sum(item.lines for item in self.queue)
                self.queue.clear()
                self.needs_snapshot = True
            self.connected = connected

    def resync(self) -> None:
        """Drop what is queued and start again from a snapshot (a rotated file, a new consumer)."""
        with self.lock:
            self.dropped += sum(item.lines for item in self.queue)
            self.queue.clear()
            self.needs_snapshot = True

    def idle(self) -> bool:
        """Nothing queued and nothing in flight."""
        with self.lock:
            return not self.queue and not self.in_flight

    def close(self) -> None:
        """Stop accepting; wake the sender."""
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        self._wake()

    def _wake(self) -> None:
        if self.notify is not None:
            try:
                self.notify()
            except RuntimeError:  # the consumer's event loop has already stopped
                pass

    def health(self) -> dict[str, Any]:
        """Counters for the health report."""
        with self.lock:
            return {
                "connected": self.connected,
                "queue_depth": len(self.queue),
                "queue_capacity": self.capacity,
                "sent": self.sent,
                "dropped": self.dropped,
                "snapshots": self.snapshots,
                "retry_streak": self.retry_streak,
                "last_error": self.last_error,
                "last_success_tick": self.last_success_tick,
                "last_failure_tick": self.last_failure_tick,
            }

"""The tick's event record: equal and hashed by value, encoded by the snapshot codec field by field."""

from __future__ import annotations

from townlet.sim import codec
from townlet.world.events import Event, EventKind


def test_events_compare_and_hash_by_value() -> None:
    """Two events with the same fields are equal and hash alike; any differing field makes them differ."""
    a = Event(7, EventKind.CHAT, agent=1, other=2, value=1.0, detail="good")
    b = Event(7, EventKind.CHAT, agent=1, other=2, value=1.0, detail="good")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Event(7, EventKind.CHAT, agent=1, other=3, value=1.0, detail="good")
    assert a != Event(8, EventKind.CHAT, agent=1, other=2, value=1.0, detail="good")


def test_event_survives_the_snapshot_codec() -> None:
    """An event encoded and decoded by the snapshot codec comes back equal, with its kind an EventKind."""
    event = Event(3, EventKind.QUEUE_JOINED, agent=4, other=-1, obj=9, value=2.0, detail="x")
    doc, arrays = codec.encode([event])
    back = codec.decode(doc, arrays)[0]
    assert back == event and isinstance(back.kind, EventKind)

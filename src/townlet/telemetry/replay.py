"""Reading a telemetry stream back: rebuild the full state at any tick from snapshots and diffs.

A consumer keeps the latest snapshot's state and applies each following diff. A diff whose tick does not
follow the state's tick means messages were lost; the consumer then waits for the next snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from townlet.telemetry.diff import apply_patch


class StreamError(ValueError):
    """A stream that cannot be read or does not reach the requested tick."""


class StreamState:
    """The state a consumer holds while reading a stream, message by message.

    Attributes:
        state: The current state (None before the first snapshot or after a gap).
        header: The latest snapshot's fields other than ``state`` (schema, config_id, seed).
        gaps: How many times a diff did not follow on (lost messages).
    """

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.header: dict[str, Any] = {}
        self.gaps = 0

    @property
    def tick(self) -> int | None:
        """The tick of the current state."""
        return None if self.state is None else int(self.state["tick"])

    def feed(self, message: dict[str, Any]) -> bool:
        """Apply one message; True when it changed the state."""
        kind = message.get("type")
        if kind == "snapshot":
            self.header = {k: v for k, v in message.items() if k != "state"}
            self.state = orjson.loads(orjson.dumps(message["state"]))  # a private copy
            return True
        if kind == "diff":
            if self.state is None:
                return False
            if int(message["tick"]) != int(self.state["tick"]) + 1:
                self.gaps += 1
                self.state = None
                return False
            apply_patch(self.state, message["patch"])
            return True
        return False

    def snapshot(self) -> dict[str, Any]:
        """The current state as a snapshot message."""
        if self.state is None:
            raise StreamError("no state yet")
        return {**self.header, "tick": self.state["tick"], "state": self.state}


def read_messages(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every message in a JSONL stream file."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise StreamError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise StreamError(f"{path}: line {number}: not JSON ({exc})") from None


def state_at(messages: Iterable[dict[str, Any]], tick: int | None = None) -> dict[str, Any]:
    """The snapshot message of the state after ``tick`` (the last tick in the stream when None)."""
    reader = StreamState()
    found: dict[str, Any] | None = None
    for message in messages:
        if not reader.feed(message) or tick is None:
            continue
        if reader.tick == tick:
            found = orjson.loads(orjson.dumps(reader.snapshot()))
        elif found is not None and reader.tick is not None and reader.tick > tick:
            break
    if tick is None and reader.state is not None:
        found = orjson.loads(orjson.dumps(reader.snapshot()))
    if found is None:
        where = "any tick" if tick is None else f"tick {tick}"
        raise StreamError(f"the stream does not contain {where}")
    return found

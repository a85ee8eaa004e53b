"""Viewport streams: a large town's viewer receives what lies in the rectangle it shows, plus a town summary.

A viewer of ``WS /ws/telemetry?view=viewport`` (the default, ``view=auto``, in towns of more than
``server.viewport_above`` agents) tells the server which tiles it shows. Each tick it then gets the agents and
objects inside that rectangle (widened by ``server.viewport_margin`` tiles), the agent it selected wherever
that agent is, the events about the agents it holds, the rest of the state as usual (clock, KPIs, economy,
narration...), ``summary`` (the whole town's population and agents per activity) and ``view`` (the rectangle
served). An agent entering the rectangle arrives whole in the diff and one leaving is removed (``null``), so a
merge-patch client holds the exact state *of its view* at every tick.

The tick thread pays nothing for this. The first viewport viewer to send a tick indexes it once
(:class:`Frame`: the diff parsed, agents' positions as arrays, each event's agents, the summary); each
viewport viewer then filters it (:class:`ViewportFilter`) with array comparisons and set operations on the
ids in its view, never a Python pass over the whole town.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from townlet.config.vocabulary import ACTIVITIES
from townlet.telemetry.outbox import Batch

VIEW_MODES = ("auto", "full", "viewport")  # ?view= of WS /ws/telemetry
VIEW_MESSAGE_BYTES = 512  # the largest viewport message read; anything longer is refused unparsed
COORDINATE_LIMIT = 1_000_000  # coordinates beyond this are refused (they are clipped to the town anyway)
NAME_LIMIT = 128  # longest agent id a viewer may select
FILTERED = ("agents", "objects")  # state sections sent only for the view


class ViewportError(ValueError):
    """A viewport message or ``rect`` parameter that is refused (the message says why)."""


Rect = tuple[int, int, int, int]  # x0, y0, x1, y1: tiles, inclusive


def _coordinates(values: Any) -> Rect:
    if not isinstance(values, list) or len(values) != 4:
        raise ViewportError("rect must be [x0, y0, x1, y1], four integers")
    if not all(type(v) is int and abs(v) <= COORDINATE_LIMIT for v in values):
        raise ViewportError(f"rect coordinates must be integers within ±{COORDINATE_LIMIT}")
    x0, y0, x1, y1 = values
    if x1 < x0 or y1 < y0:
        raise ViewportError("rect must have x0 <= x1 and y0 <= y1")
    return x0, y0, x1, y1


def parse_rect(text: str) -> Rect:
    """The ``?rect=x0,y0,x1,y1`` query parameter as a rectangle.

    Raises:
        ViewportError: not four integers in order.
    """
    if len(text) > VIEW_MESSAGE_BYTES:
        raise ViewportError("rect is too long")
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise ViewportError("rect must be x0,y0,x1,y1 (four integers)") from None
    return _coordinates(values)


UNCHANGED: Any = object()


def parse_view_message(raw: str | bytes) -> tuple[Rect | None, Any]:
    """A viewer's ``{"type": "view", "rect": [x0, y0, x1, y1], "selected": id | null}`` message.

    Both ``rect`` and ``selected`` are optional (what is left out stays as it was).

    Returns:
        The rectangle (None: unchanged) and the selected agent id (``None`` clears the selection; the
        module's ``UNCHANGED`` sentinel: unchanged).

    Raises:
        ViewportError: too long, not JSON, or fields of the wrong shape.
    """
    if len(raw) > VIEW_MESSAGE_BYTES:
        raise ViewportError(f"view messages are at most {VIEW_MESSAGE_BYTES} bytes")
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ViewportError("a view message must be JSON") from None
    if not isinstance(message, dict) or message.get("type") != "view":
        raise ViewportError('a view message is a JSON object {"type": "view", "rect": [...], "selected": ...}')
    unknown = set(message) - {"type", "rect", "selected"}
    if unknown:
        raise ViewportError(f"unknown fields in a view message: {', '.join(sorted(map(str, unknown)))}")
    rect = _coordinates(message["rect"]) if "rect" in message else None
    selected = message.get("selected", UNCHANGED)
    if selected is not UNCHANGED and selected is not None and not (isinstance(selected, str) and selected):
        raise ViewportError("selected must be an agent id (a string) or null")
    if isinstance(selected, str) and len(selected) > NAME_LIMIT:
        raise ViewportError(f"selected is longer than {NAME_LIMIT} characters")
    return rect, selected


def clip(rect: Rect, width: int, height: int, max_tiles: int) -> Rect:
    """``rect`` inside the town, each side at most ``max_tiles`` long (shrunk around its centre)."""
    x0, y0, x1, y1 = rect
    x0, x1 = _span(x0, x1, width, max_tiles)
    y0, y1 = _span(y0, y1, height, max_tiles)
    return x0, y0, x1, y1


def _span(lo: int, hi: int, size: int, most: int) -> tuple[int, int]:
    lo, hi = min(max(lo, 0), size - 1), min(max(hi, 0), size - 1)
    if hi - lo + 1 > most:
        centre = (lo + hi) // 2
        lo = max(0, centre - most // 2)
        hi = lo + most - 1
    return lo, hi


class Frame:
    """One published tick, indexed once for every viewport viewer.

    Args:
        batch: The tick as published (its diff, or a snapshot when the batch is one, then its event lines).
        state: The full state after the tick (the encoder's; never modified).
        header: The snapshot message's fields besides ``state`` (``type``, ``schema``, ``tick``, ``config_id``...).
    """

    def __init__(self, batch: Batch, state: dict[str, Any], header: dict[str, Any]) -> None:
        lines = batch.diff.split(b"\n")
        self.tick = batch.tick
        self.snapshot = lines[0].startswith(b'{"type":"snapshot"')
        self.patch: dict[str, Any] = {} if self.snapshot else orjson.loads(lines[0])["patch"]
        self.state = state
        self.header = header
        agents = state["agents"]
        self.ids = list(agents)
        values = agents.values()
        self.xs = np.fromiter(map(itemgetter("x"), values), np.int32, len(self.ids))
        self.ys = np.fromiter(map(itemgetter("y"), values), np.int32, len(self.ids))
        counts = Counter(map(itemgetter("activity"), values))
        self.summary = {"population": len(self.ids), "activities": {a: counts.get(a, 0) for a in ACTIVITIES}}
        self.events: list[tuple[Any, Any, bytes]] = []
        for line in lines[1:]:
            if line:
                message = orjson.loads(line)
                self.events.append((message.get("agent"), message.get("other"), line))
        self.rest = self._rest(self.patch) if not self.snapshot else b""  # what every viewer's diff shares
        self._rest_state: bytes | None = None
        self.built_s = 0.0

    @staticmethod
    def _rest(section: dict[str, Any]) -> bytes:
        return orjson.dumps({k: v for k, v in section.items() if k not in FILTERED})

    def rest_state(self) -> bytes:
        """The state but its filtered sections, serialized (built once, for the viewers that rebase on it)."""
        if self._rest_state is None:
            self._rest_state = self._rest(self.state)
        return self._rest_state


class ObjectIndex:
    """Object ids and positions as arrays (objects never move), to find those in a rectangle."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.ids = list(objects)
        values = objects.values()
        self.xs = np.fromiter(map(itemgetter("x"), values), np.int32, len(self.ids))
        self.ys = np.fromiter(map(itemgetter("y"), values), np.int32, len(self.ids))

    def inside(self, x0: int, y0: int, x1: int, y1: int) -> set[str]:
        """The ids of the objects inside the rectangle."""
        ids = self.ids
        mask = (self.xs >= x0) & (self.xs <= x1) & (self.ys >= y0) & (self.ys <= y1)
        return {ids[i] for i in np.flatnonzero(mask).tolist()}


def _delta(current: dict[str, Any], patch: Any, wanted: set[str], held: set[str]) -> dict[str, Any]:
    """A merge patch of one keyed section for a view: what entered whole, what left null, what changed."""
    out: dict[str, Any] = dict.fromkeys(held - wanted)
    for key in wanted - held:
        out[key] = current[key]
    if isinstance(patch, dict) and patch:
        for key in wanted & held:
            if key in patch:
                out[key] = patch[key]
    return out


def _merged(rest: bytes, extra: dict[str, Any]) -> bytes:
    """The JSON object ``rest`` (serialized) with the keys of ``extra`` added (keys never overlap)."""
    if not extra:
        return rest
    more = orjson.dumps(extra)
    return more if rest == b"{}" else rest[:-1] + b"," + more[1:]


class ViewportFilter:
    """One viewport viewer: the rectangle it shows, its selected agent, and what it holds of the state.

    Args:
        width: Town width (tiles).
        height: Town height (tiles).
        max_tiles: Longest side of the rectangle served (``server.viewport_max_tiles``).
        margin: Tiles around the rectangle whose agents and objects are sent too (``server.viewport_margin``).
        rect: The first rectangle (default: the town's centre, ``max_tiles`` a side at most).
    """

    def __init__(self, width: int, height: int, max_tiles: int, margin: int, rect: Rect | None = None) -> None:
        self.width, self.height, self.max_tiles, self.margin = width, height, max_tiles, margin
        self.rect = clip(rect or (0, 0, width - 1, height - 1), width, height, max_tiles)
        self.selected: str | None = None
        self.agents: set[str] = set()  # the agent ids this viewer holds
        self.objects: set[str] = set()
        self._objects_wanted: set[str] | None = None  # objects in view (recomputed when the view moves)
        self._view_sent = False
        self._summary_sent: dict[str, Any] | None = None
        self.render_s = 0.0  # time spent rendering for this viewer (the benchmark reads it)

    def set_view(self, rect: Rect | None, selected: Any = UNCHANGED) -> None:
        """Show ``rect`` (None: unchanged) and select ``selected`` (None clears; ``UNCHANGED``: unchanged)."""
        if rect is not None:
            self.rect = clip(rect, self.width, self.height, self.max_tiles)
            self._objects_wanted = None
            self._view_sent = False
        if selected is not UNCHANGED:
            self.selected = selected

    def view(self) -> dict[str, Any]:
        """The ``view`` section: the rectangle served and its margin."""
        return {"mode": "viewport", "rect": list(self.rect), "margin": self.margin, "max_tiles": self.max_tiles}

    def render(self, frame: Frame, objects: ObjectIndex, rebase: bool) -> bytes:
        """This viewer's lines for ``frame``: a snapshot (``rebase``, or the frame is one) or a diff, then events.

        A snapshot replaces everything the viewer holds; a diff brings agents and objects that entered the view
        whole, removes those that left, and carries the changes of those that stayed.
        """
        started = time.perf_counter()
        x0, y0, x1, y1 = self.rect
        m = self.margin
        x0, y0, x1, y1 = x0 - m, y0 - m, x1 + m, y1 + m
        ids = frame.ids
        mask = (frame.xs >= x0) & (frame.xs <= x1) & (frame.ys >= y0) & (frame.ys <= y1)
        wanted = {ids[i] for i in np.flatnonzero(mask).tolist()}
        state_agents = frame.state["agents"]
        if self.selected is not None and self.selected in state_agents:
            wanted.add(self.selected)
        if self._objects_wanted is None:
            self._objects_wanted = objects.inside(x0, y0, x1, y1)
        objects_wanted = self._objects_wanted
        state_objects = frame.state["objects"]
        extra: dict[str, Any] = {}
        if rebase or frame.snapshot:
            extra["agents"] = {k: state_agents[k] for k in wanted}
            extra["objects"] = {k: state_objects[k] for k in objects_wanted if k in state_objects}
            extra["summary"] = frame.summary
            extra["view"] = self.view()
            head = orjson.dumps({**frame.header, "tick": frame.tick})
            line = head[:-1] + b',"state":' + _merged(frame.rest_state(), extra) + b"}"
        else:
            agents = _delta(state_agents, frame.patch.get("agents"), wanted, self.agents)
            objects_wanted = objects_wanted & state_objects.keys()
            things = _delta(state_objects, frame.patch.get("objects"), objects_wanted, self.objects)
            if agents:
                extra["agents"] = agents
            if things:
                extra["objects"] = things
            if frame.summary != self._summary_sent:
                extra["summary"] = frame.summary
            if not self._view_sent:
                extra["view"] = self.view()
            line = b'{"type":"diff","tick":%d,"patch":' % frame.tick + _merged(frame.rest, extra) + b"}"
        self.agents = wanted
        self.objects = set(objects_wanted)
        self._summary_sent = frame.summary
        self._view_sent = True
        lines = [line]
        for agent, other, event in frame.events:
            if (agent is None and other is None) or agent in wanted or other in wanted:
                lines.append(event)
        lines.append(b"")
        self.render_s += time.perf_counter() - started
        return b"\n".join(lines)


class RateLimit:
    """A token bucket: ``rate`` a second, bursts of ``math.ceil(rate)``."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, float(math.ceil(rate)))
        self.tokens = self.burst
        self.at = time.monotonic()

    def take(self) -> bool:
        """Whether one more is allowed now (and count it)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

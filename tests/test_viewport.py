"""Viewport streams: a viewer is sent the agents and objects in the rectangle it shows, a summary, and nothing else."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from starlette.websockets import WebSocketDisconnect

from test_server import serving
from townlet.config.loader import load_config
from townlet.server.live import LiveTown
from townlet.server.viewport import (
    UNCHANGED,
    ViewportError,
    ViewportFilter,
    clip,
    parse_rect,
    parse_view_message,
)
from townlet.telemetry.diff import apply_patch
from townlet.telemetry.schema import published_schema


def expected_view(full: dict[str, Any], rect: tuple[int, int, int, int], margin: int, selected: str | None) -> dict:
    """The full state as a viewer of ``rect`` must hold it (agents and objects inside, the rest whole)."""
    x0, y0, x1, y1 = rect[0] - margin, rect[1] - margin, rect[2] + margin, rect[3] + margin

    def inside(v: dict[str, Any]) -> bool:
        return x0 <= v["x"] <= x1 and y0 <= v["y"] <= y1

    out = {k: v for k, v in full.items()}
    out["agents"] = {k: v for k, v in full["agents"].items() if inside(v) or k == selected}
    out["objects"] = {k: v for k, v in full["objects"].items() if inside(v)}
    return out


def published(live: LiveTown) -> Any:
    """Step the town once; the full state published and the tick's sequence number in the viewer feed."""
    live.sim.step()
    seq = live.viewers.feed.seq
    return copy.deepcopy(live.publisher.encoder.state), seq


def test_a_viewport_viewer_holds_exactly_its_view_tick_after_tick_as_the_view_moves(tmp_path: Path) -> None:
    """Diffs applied to a viewport snapshot give the full state cut to the view, while the view moves and selects."""
    loaded = load_config(overrides=["population.agents=40", "town.scale=2", f"console.state_dir={tmp_path}"])
    live = LiveTown.build(loaded, seed=3)
    live.publisher.attach()
    cursor = live.viewers.subscribe()  # someone watches: ticks are published
    live.viewers.watch_viewport(True)
    town = live.sim.world.town
    view = ViewportFilter(int(town.width), int(town.height), max_tiles=20, margin=2, rect=(0, 0, 15, 11))
    validator = jsonschema.Draft202012Validator(published_schema())
    held: dict[str, Any] | None = None
    seen_in, seen_out, entered, left = 0, 0, 0, 0
    try:
        for tick in range(120):
            full, seq = published(live)
            if tick == 40:
                view.set_view((20, 8, 60, 40))  # too wide: clipped to 20 tiles a side around its centre
                assert view.rect == clip((20, 8, 60, 40), int(town.width), int(town.height), 20)
                assert view.rect[2] - view.rect[0] + 1 == 20
            if tick == 70:
                far = next(k for k, a in full["agents"].items() if a["x"] > 40 or a["y"] > 30)
                view.set_view(None, far)
            frame, objects = live.viewers.frame(seq)
            before = set(view.agents)
            rebase = held is None or tick in (50, 90)  # a fresh snapshot on a diff tick (a viewer resyncs)
            lines = [json.loads(line) for line in view.render(frame, objects, rebase).split(b"\n") if line]
            for message in lines:
                validator.validate(message)
            head = lines[0]
            assert (head["type"] == "snapshot") == (rebase or frame.snapshot)
            if head["type"] == "snapshot":
                held = head["state"]
            else:
                assert held is not None and head["tick"] == held["tick"] + 1
                apply_patch(held, head["patch"])
            assert held is not None
            want = expected_view(full, view.rect, 2, view.selected)
            assert {k: v for k, v in held.items() if k not in ("summary", "view")} == want
            assert held["summary"]["population"] == len(full["agents"])
            assert sum(held["summary"]["activities"].values()) == len(full["agents"])
            assert held["view"]["rect"] == list(view.rect)
            if view.selected is not None:
                assert view.selected in held["agents"]  # the selected agent is sent wherever it is
            seen_in += len(held["agents"])
            seen_out += len(full["agents"]) - len(held["agents"])
            entered += len(view.agents - before)
            left += len(before - view.agents)
            for event in lines[1:]:  # only events about agents in view (or about nobody)
                assert all(event.get(k) is None or event[k] in view.agents for k in ("agent", "other")), event
    finally:
        live.viewers.unsubscribe(cursor)
        live.publisher.close()
    assert seen_in > 0 and seen_out > 0 and entered > 0 and left > 0  # the test saw agents on both sides move


def test_view_messages_and_rect_parameters_are_validated() -> None:
    """Malformed, oversized or out-of-range view messages are refused with a reason; good ones parse."""
    assert parse_view_message('{"type": "view", "rect": [1, 2, 30, 40]}') == ((1, 2, 30, 40), UNCHANGED)
    assert parse_view_message('{"type": "view", "selected": null}') == (None, None)
    assert parse_view_message('{"type": "view", "selected": "agent_3"}') == (None, "agent_3")
    assert parse_rect("0,0,10,5") == (0, 0, 10, 5)
    bad = [
        ("not json", "JSON"),
        ('["view"]', "JSON object"),
        ('{"type": "views"}', "JSON object"),
        ('{"type": "view", "rect": [1, 2, 3]}', "four integers"),
        ('{"type": "view", "rect": [1, 2, 3, 4.5]}', "integers"),
        ('{"type": "view", "rect": [true, 2, 3, 4]}', "integers"),
        ('{"type": "view", "rect": [5, 2, 3, 4]}', "x0 <= x1"),
        ('{"type": "view", "rect": [0, 0, 99999999, 4]}', "within"),
        ('{"type": "view", "selected": 7}', "agent id"),
        ('{"type": "view", "selected": "' + "a" * 200 + '"}', "longer than"),
        ('{"type": "view", "zoom": 3}', "unknown fields"),
        ('{"type": "view", "rect": [' + " " * 600 + "0,0,1,1]}", "at most"),
    ]
    for text, reason in bad:
        with pytest.raises(ViewportError, match=reason):
            parse_view_message(text)
    for text in ("1,2,3", "a,b,c,d", "3,0,1,1", "1,2,3,4,5"):
        with pytest.raises(ViewportError):
            parse_rect(text)
    assert clip((-50, -50, 500, 500), 64, 48, 1000) == (0, 0, 63, 47)
    assert clip((900, 900, 950, 950), 64, 48, 1000) == (63, 47, 63, 47)  # outside the town: its corner tile


def receive_state(ws: Any) -> dict[str, Any]:
    """The next snapshot's state (skipping diffs and events)."""
    while True:
        lines = [json.loads(line) for line in ws.receive_text().split("\n")]
        if lines[0]["type"] == "snapshot":
            return lines[0]["state"]


def receive_error(ws: Any) -> dict[str, Any]:
    """The next error message (skipping the stream's frames)."""
    for _ in range(500):
        first = json.loads(ws.receive_text().split("\n")[0])
        if first["type"] == "error":
            return first
    raise AssertionError("no error message")


def test_the_stream_sends_a_viewport_follows_view_messages_and_refuses_bad_ones(tmp_path: Path) -> None:
    """?view=viewport&rect= sends only the agents inside; a view message moves it; bad ones get an error, then 1008."""
    sets = ["population.agents=30", "server.viewport_refusals=3", "server.viewport_margin=0"]
    with serving(tmp_path, sets) as town:
        with town.stream(query="?frames=tick&view=viewport&rect=0,0,9,9") as ws:
            state = receive_state(ws)
            assert state["view"]["rect"] == [0, 0, 9, 9] and state["summary"]["population"] == 30
            assert all(a["x"] <= 9 and a["y"] <= 9 for a in state["agents"].values())
            assert all(o["x"] <= 9 and o["y"] <= 9 for o in state["objects"].values())
            some = sorted(town.live.publisher.encoder.state["agents"])[0]
            ws.send_text(json.dumps({"type": "view", "rect": [10, 5, 40, 30], "selected": some}))
            state = receive_state(ws)  # a new view starts from a fresh snapshot
            assert state["view"]["rect"] == [10, 5, 40, 30] and some in state["agents"]
            ws.send_text('{"type": "view", "rect": "everything"}')
            error = receive_error(ws)
            assert error["code"] == "E_INVALID_ARG" and "rect must be" in error["message"]
            ws.send_bytes(b"\x00\x01")
            assert "text frames" in receive_error(ws)["message"]
            ws.send_text("{}")  # the third refusal closes the connection
            with pytest.raises(WebSocketDisconnect) as closed:
                for _ in range(500):
                    ws.receive_text()
            assert closed.value.code == 1008 and "refused" in closed.value.reason
        assert town.client.get("/healthz").json()["status"] == "ok"  # the town goes on


def test_view_messages_are_rate_limited(tmp_path: Path) -> None:
    """A viewer sending views faster than server.viewport_rate gets E_RATE_LIMITED and keeps its stream."""
    with serving(tmp_path, ["population.agents=20", "server.viewport_rate=2"]) as town:
        with town.stream(query="?frames=tick&view=viewport") as ws:
            receive_state(ws)
            for x in range(8):  # a burst of 2 is allowed, then 2 a second
                ws.send_text(json.dumps({"type": "view", "rect": [x, 0, x + 10, 10]}))
            error = receive_error(ws)
            assert error["code"] == "E_RATE_LIMITED" and "a second" in error["message"]
            assert receive_state_or_diff(ws)["type"] in ("snapshot", "diff", "error")  # the stream goes on


def test_auto_mode_streams_small_towns_whole_and_large_ones_by_viewport(tmp_path: Path) -> None:
    """?view=auto (the default) sends the whole town up to server.viewport_above agents, a viewport above it."""
    with serving(tmp_path / "a", ["population.agents=10"]) as town, town.stream(query="?frames=tick") as ws:
        state = receive_state(ws)
        assert "view" not in state and "summary" not in state and len(state["agents"]) == 10
        ws.send_text("anything")  # a whole-town viewer's messages are ignored, as before
        assert len(receive_state_or_diff(ws)) > 0
    sets = ["population.agents=10", "server.viewport_above=5", "server.viewport_max_tiles=8"]
    with serving(tmp_path / "b", sets) as town:
        with town.stream(query="?frames=tick") as ws:
            state = receive_state(ws)
            rect = state["view"]["rect"]
            assert rect[2] - rect[0] + 1 == 8 and rect[3] - rect[1] + 1 == 8  # the town's centre, 8 tiles a side
        with town.stream(query="?frames=tick&view=full") as ws:
            assert "view" not in receive_state(ws)
        for query, reason in (("?view=some", "view must be one of"), ("?view=viewport&rect=1,2", "four integers")):
            with pytest.raises(WebSocketDisconnect) as closed, town.stream(query=query) as ws:
                ws.receive_text()
            assert closed.value.code == 1008 and reason in closed.value.reason


def receive_state_or_diff(ws: Any) -> dict[str, Any]:
    """The next frame's first message."""
    return json.loads(ws.receive_text().split("\n")[0])


def test_a_town_faster_than_its_viewers_is_encoded_only_when_a_snapshot_is_due(tmp_path: Path) -> None:
    """At 100x, viewers following by snapshots let the publisher skip the ticks nobody will be sent."""
    with serving(tmp_path, ["population.agents=20"], speed="100x") as town:
        with town.stream(query="?frames=tick") as a, town.stream(query="?frames=tick&view=viewport") as b:
            for ws in (a, b):
                receive_state(ws)
            time.sleep(0.5)  # both settle into following by snapshots
            ticks0, published0 = town.live.last_tick, town.live.publisher.published
            frames = []
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                frames.append(json.loads(a.receive_text().split("\n")[0]))
                b.receive_text()
            ticks, published = town.live.last_tick - ticks0, town.live.publisher.published - published0
    assert ticks > 200  # the town ran far faster than the viewers' 50 updates a second
    assert published < ticks / 4, (published, ticks)  # most ticks were never encoded
    assert sum(f["type"] == "snapshot" for f in frames) >= len(frames) // 2  # what viewers got: fresh snapshots
    assert [f["tick"] for f in frames] == sorted(f["tick"] for f in frames)

"""The live server in process: pacing, the telemetry WebSocket, the console API, health, metrics and guards."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from townlet.config.loader import load_config
from townlet.console.auth import TokenAuthority
from townlet.server.app import STATIC_DIR, create_app
from townlet.server.console_api import STATUS_OF
from townlet.server.live import LiveTown
from townlet.server.viewers import Feed, ViewerTransport, host_allowed, origin_allowed
from townlet.telemetry.diff import apply_patch
from townlet.telemetry.outbox import Batch
from townlet.telemetry.schema import published_schema

BASE = "http://127.0.0.1:8000"
FAST = ["time.live_tick_seconds=0.02", "server.stream_rate=500", "console.audit_fsync=false"]


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    """A validator for the published telemetry schema."""
    return jsonschema.Draft202012Validator(published_schema())


class Town:
    """An in-process live server with an admin and a viewer token."""

    def __init__(self, client: TestClient, live: LiveTown, state_dir: Path, admin: str, viewer: str) -> None:
        self.client, self.live, self.state_dir, self.admin, self.viewer = client, live, state_dir, admin, viewer

    def command(self, token: str | None, cmd: str, **args: Any) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        answer = self.client.post("/api/console", json={"cmd": cmd, "args": args}, headers=headers)
        return answer.status_code, answer.json()

    def stream(self, headers: dict[str, str] | None = None, query: str = "") -> Any:
        """A WebSocket to the telemetry stream (TestClient needs the full URL to send our Host)."""
        url = BASE.replace("http", "ws") + "/ws/telemetry" + query
        return self.client.websocket_connect(url, headers=dict(headers or {}))

    def wait_tick(self, tick: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.live.last_tick < tick:
            assert time.monotonic() < deadline, f"tick {tick} not reached (at {self.live.last_tick})"
            time.sleep(0.01)


@contextlib.contextmanager
def serving(tmp_path: Path, overrides: list[str] = (), speed: str = "1x") -> Iterator[Town]:  # type: ignore[assignment]
    """A started live town behind its app (TestClient runs the lifespan)."""
    state = tmp_path / "state"
    loaded = load_config(overrides=[*FAST, f"console.state_dir={state}", f"server.speed={speed}", *overrides])
    authority = TokenAuthority.from_config(loaded.config.console)
    admin, _ = authority.issue("alice", "admin", 3600)
    viewer, _ = authority.issue("bob", "viewer", 3600)
    live = LiveTown.build(loaded, seed=0)
    with TestClient(create_app(live), base_url=BASE) as client:
        yield Town(client, live, state, admin, viewer)


def receive(ws: Any, count: int) -> list[dict[str, Any]]:
    return [json.loads(ws.receive_text()) for _ in range(count)]


def test_healthz_reports_status_and_tick(tmp_path: Path) -> None:
    """/healthz answers 200 with status ok and the tick advancing at the configured pace."""
    with serving(tmp_path) as town:
        town.wait_tick(5)
        first = town.client.get("/healthz")
        assert first.status_code == 200
        body = first.json()
        assert body["status"] == "ok" and body["tick"] >= 5 and body["speed"] == "1x" and body["paused"] is False
        town.wait_tick(body["tick"] + 3)
        assert town.client.get("/healthz").json()["tick"] > body["tick"]


def test_metrics_expose_tick_rate_phase_times_clients_drops_and_console_results(tmp_path: Path) -> None:
    """/metrics is Prometheus text with the tick rate, per-phase times, viewers, drops and console answers."""
    with serving(tmp_path) as town:
        with town.stream() as ws:
            receive(ws, 3)
            town.command(town.admin, "status")
            town.command(town.viewer, "spawn")
            town.command(None, "status")
            town.wait_tick(town.live.last_tick + 30)
            text = town.client.get("/metrics")
        assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
        samples = {}
        for line in text.text.splitlines():
            if not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        assert samples["townlet_tick_rate"] > 10  # 50 ticks/s configured
        assert samples['townlet_phase_seconds_total{phase="policy"}'] > 0
        assert samples['townlet_phase_seconds_total{phase="telemetry"}'] > 0
        assert samples["townlet_connected_clients"] == 1
        assert 'townlet_telemetry_messages_dropped_total{transport="viewers"}' in samples
        assert samples['townlet_telemetry_messages_sent_total{transport="viewers"}'] >= 3
        assert samples['townlet_console_results_total{code="ok"}'] == 1
        assert samples['townlet_console_results_total{code="E_FORBIDDEN"}'] == 1
        assert samples['townlet_console_results_total{code="E_UNAUTHENTICATED"}'] == 1
        assert samples['townlet_console_commands_total{status="refused"}'] == 2
        assert samples['townlet_tick_lag_seconds{quantile="0.99"}'] < 0.05
        assert any(name.startswith("townlet_slowest_tick_seconds{") for name in samples)
        tick_s = {stat: samples[f'townlet_tick_duration_seconds{{stat="{stat}"}}'] for stat in ("p50", "p99")}
        assert 0 < tick_s["p50"] <= tick_s["p99"] and samples['townlet_phase_window_seconds{phase="telemetry"}'] > 0
        target, mean = samples["townlet_tick_target_seconds"], samples['townlet_tick_duration_seconds{stat="mean"}']
        assert target == 0.0025 and samples["townlet_tick_headroom"] == pytest.approx(1 - mean / target, abs=0.01)


def test_the_stream_is_a_snapshot_then_schema_valid_diffs_that_rebuild_any_later_snapshot(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    """A viewer's diffs applied to its first snapshot equal the snapshot a later viewer receives."""
    with serving(tmp_path) as town, town.stream() as first:
        messages = receive(first, 1)
        assert messages[0]["type"] == "snapshot" and messages[0]["schema"] == "townlet.telemetry/2"
        state = messages[0]["state"]
        town.wait_tick(state["tick"] + 10)
        with town.stream() as second:
            late = receive(second, 1)[0]
        assert late["type"] == "snapshot"
        while state["tick"] < late["state"]["tick"]:
            message = receive(first, 1)[0]
            validator.validate(message)
            if message["type"] == "diff":
                assert message["tick"] == state["tick"] + 1
                apply_patch(state, message["patch"])
        assert state == late["state"]


def test_console_api_answers_with_stable_codes_and_http_statuses(tmp_path: Path) -> None:
    """200 applied, 401 E_UNAUTHENTICATED, 403 E_FORBIDDEN, 404 E_NOT_FOUND, 400 E_INVALID_ARG, 409 conflicts."""
    with serving(tmp_path) as town:
        status, body = town.command(town.admin, "status")
        assert status == 200 and body["ok"] and body["data"]["agents"] == 8
        status, body = town.command(town.viewer, "agent", agent="agent_1")
        assert status == 200 and set(body["data"]["needs"]) == {"hunger", "hygiene", "energy", "social"}
        for token in (None, "garbage", town.admin[:-4] + "AAAA"):
            status, body = town.command(token, "status")
            assert (status, body["code"]) == (401, "E_UNAUTHENTICATED")
        answer = town.client.post("/api/console", json={"cmd": "status"})
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert town.command(town.viewer, "spawn")[0:1] == (403,)
        assert town.command(town.viewer, "spawn")[1]["code"] == "E_FORBIDDEN"
        assert town.command(town.admin, "no_such_command")[1]["code"] == "E_NOT_FOUND"
        assert town.command(town.admin, "no_such_command")[0] == 404
        status, body = town.command(town.admin, "setneed", agent="agent_1", need="hunger", value=7)
        assert (status, body["code"]) == (400, "E_INVALID_ARG")
        status, body = town.command(town.admin, "spawn", agent="agent_2")
        assert (status, body["code"]) == (409, "E_CONFLICT")
        status, body = town.command(town.admin, "teleport", agent="agent_1", x=0, y=0)
        assert (status, body["code"]) == (409, "E_BLOCKED_TILE")
        answer = town.client.post("/api/console", content=b"[1, 2", headers={"Authorization": f"Bearer {town.admin}"})
        assert answer.status_code == 400 and answer.json()["code"] == "E_INVALID_ARG"
        # the role comes from the token only
        status, body = town.command(town.viewer, "spawn", role="admin")
        assert status in (400, 403)
        assert town.live.sim.world.agents.alive.sum() == 8
    assert set(STATUS_OF.values()) == {200, 400, 401, 403, 404, 409, 429}


def test_the_console_api_rate_limits_each_principal_and_slows_failed_logins(tmp_path: Path) -> None:
    """Past its burst a principal gets 429 E_RATE_LIMITED while another still passes; bad tokens are slowed."""
    sets = [
        "console.rate_limit.per_second=0.5",
        "console.rate_limit.burst=3",
        "server.auth_failures.per_second=0.5",
        "server.auth_failures.burst=3",
    ]
    with serving(tmp_path, sets) as town:
        codes = [town.command(town.viewer, "status")[0] for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        assert town.command(town.admin, "status")[0] == 200
        failures = [town.command("not-a-token", "status") for _ in range(5)]
        assert [f[0] for f in failures] == [401, 401, 401, 429, 429]  # burst spent, then throttled
        assert failures[-1][1]["code"] == "E_RATE_LIMITED"
        assert town.command(town.admin, "status")[0] == 200  # the same address's valid token is never locked out


def test_a_paused_town_applies_commands_at_once_and_viewers_get_the_amended_state(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    """Paused, time stands still, a spawn answers at once, and viewers receive a snapshot with the newcomer."""
    with serving(tmp_path) as town, town.stream() as ws:
        receive(ws, 1)
        status, body = town.command(town.admin, "pause")
        assert status == 200 and body["data"]["paused"] is True
        time.sleep(0.2)
        frozen = town.live.last_tick
        status, body = town.command(town.admin, "spawn", agent="visitor", x=16, y=11)
        assert status == 200 and (body["data"]["x"], body["data"]["y"]) == (16, 11)
        message: dict[str, Any] = {}
        while "visitor" not in message.get("state", {}).get("agents", {}):
            message = receive(ws, 1)[0]
            validator.validate(message)
        assert message["type"] == "snapshot" and message["tick"] == frozen
        assert message["state"]["clock"]["paused"] is True
        assert message["state"]["agents"]["visitor"]["x"] == 16
        time.sleep(0.2)
        assert town.live.last_tick == frozen
        status, _ = town.command(town.admin, "pause", on=False)
        assert status == 200
        state = message["state"]
        while state["tick"] < frozen + 3:  # resumed: diffs follow on from the amended state
            message = receive(ws, 1)[0]
            validator.validate(message)
            if message["type"] == "snapshot":
                state = message["state"]
            elif message["type"] == "diff":
                assert message["tick"] == state["tick"] + 1
                apply_patch(state, message["patch"])
        assert "visitor" in state["agents"] and state["clock"]["paused"] is False


def test_frames_tick_sends_each_tick_as_one_frame_of_its_messages(
    tmp_path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    """With ?frames=tick every frame is one tick: a snapshot or a diff line, then that tick's event lines."""
    with serving(tmp_path, ["population.agents=12"]) as town, town.stream(query="?frames=tick") as ws:
        frames = [ws.receive_text()]
        assert town.command(town.admin, "spawn")[0] == 200  # an arrival: at least one event line
        frames += [ws.receive_text() for _ in range(40)]
    events = 0
    for i, frame in enumerate(frames):
        lines = [json.loads(line) for line in frame.split("\n")]
        assert lines[0]["type"] == ("snapshot" if i == 0 else "diff")
        assert all(m["type"] == "event" for m in lines[1:])
        assert all(m["tick"] == lines[0]["tick"] for m in lines[1:])
        for m in lines:
            validator.validate(m)
        events += len(lines) - 1
        if i > 0:
            assert lines[0]["tick"] == json.loads(frames[i - 1].split("\n")[0])["tick"] + 1
    assert events > 0


def test_an_unknown_frames_value_is_refused_with_a_reason(tmp_path: Path) -> None:
    """?frames= other than message or tick closes the stream (1008) naming the allowed values."""
    with serving(tmp_path) as town:
        with pytest.raises(WebSocketDisconnect) as closed, town.stream(query="?frames=all") as ws:
            ws.receive_text()
        assert closed.value.code == 1008 and "message, tick" in closed.value.reason


def test_a_viewer_joining_a_paused_town_gets_its_state_at_once(tmp_path: Path) -> None:
    """A town started paused shows its first tick; a viewer connecting while paused receives a snapshot."""
    with serving(tmp_path, speed="pause") as town:
        time.sleep(0.3)
        assert town.live.last_tick == 0
        with town.stream() as ws:
            message = receive(ws, 1)[0]
        assert message["type"] == "snapshot" and message["tick"] == 0 and message["state"]["clock"]["paused"]
        assert town.client.get("/healthz").json()["paused"] is True


def test_speed_sets_the_pace_of_ticks(tmp_path: Path) -> None:
    """At 1x a tick takes live_tick_seconds; 10x is about ten times faster; pause stops time."""
    loaded = load_config(overrides=["time.live_tick_seconds=0.05", f"console.state_dir={tmp_path}"])
    live = LiveTown.build(loaded)
    live.start()
    try:

        def rate(seconds: float = 1.0) -> float:
            start = live.last_tick
            time.sleep(seconds)
            return (live.last_tick - start) / seconds

        time.sleep(0.2)
        assert 15 <= rate() <= 21  # 20 ticks/s
        live.set_speed("10x")
        time.sleep(0.1)
        assert 150 <= rate() <= 210
        live.set_speed("pause")
        time.sleep(0.1)
        assert rate(0.5) == 0
        assert live.stats.lag_quantiles()["p99"] < 0.05
    finally:
        live.stop()


def test_a_viewer_behind_the_ring_skips_to_a_snapshot_and_counts_what_it_missed() -> None:
    """Each viewer's backlog is bounded by the feed; one that falls behind resumes from a fresh snapshot."""
    transport = ViewerTransport(buffer_ticks=4)
    fast, slow = transport.subscribe(), transport.subscribe()

    def batch(tick: int) -> Batch:
        return Batch(
            tick,
            f'{{"type":"diff","tick":{tick}}}\n'.encode(),
            1,
            lambda: f'{{"type":"snapshot","tick":{tick}}}\n'.encode(),
        )

    transport.put(batch(0))
    first = fast.take()
    assert first is not None and first.snapshot and first.tick == 0
    fast.sent_ok(first)
    for tick in range(1, 10):
        transport.put(batch(tick))
        item = fast.take()
        assert item is not None and not item.snapshot and item.tick == tick
        fast.sent_ok(item)
    late = slow.take()  # never read until now: only the latest tick, as a snapshot
    assert late is not None and late.snapshot and late.tick == 9 and slow.take() is None
    slow.sent_ok(late)
    for tick in range(10, 20):  # falls behind by more than the ring holds
        transport.put(batch(tick))
    again = slow.take()
    assert again is not None and again.snapshot and again.tick == 19
    assert slow.dropped == 9  # ticks 10..18
    offered, dropped = transport.counts()
    assert offered == 40 and dropped == 9
    slow.sent_ok(again)
    slow.resync(coalesce=True)  # the town outpaces the update rate: ticks fold into the next snapshot
    for tick in range(20, 23):
        transport.put(batch(tick))
    folded = slow.take()
    assert folded is not None and folded.snapshot and folded.tick == 22
    assert slow.coalesced == 2 and slow.dropped == 9 and transport.totals["coalesced"] == 2
    assert transport.counts() == (46 - 2, 9)  # coalesced ticks are neither offered nor dropped
    assert transport.health()["clients"] == 2 and transport.health()["queue_depth"] == 4  # fast: at most the ring
    assert len(Feed(4).slots) == 4


def test_hosts_origins_and_cors_follow_the_config(tmp_path: Path) -> None:
    """A foreign Host is refused, a foreign page may not open the stream or read the API, listed origins may."""
    allowed = "https://overlay.example"
    with serving(tmp_path, [f'server.allowed_origins=["{allowed}"]']) as town:
        client = town.client
        assert client.get("/healthz", headers={"host": "evil.example:8000"}).status_code == 400
        with pytest.raises(WebSocketDisconnect), town.stream({"origin": "https://evil.example"}) as ws:
            ws.receive_text()
        for origin in (BASE, allowed):
            with town.stream({"origin": origin}) as ws:
                assert json.loads(ws.receive_text())["type"] == "snapshot"
        with town.stream() as ws:  # not a browser: no Origin
            assert json.loads(ws.receive_text())["type"] == "snapshot"
        preflight = {
            "origin": allowed,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        }
        answer = client.options("/api/console", headers=preflight)
        assert answer.headers.get("access-control-allow-origin") == allowed
        answer = client.options("/api/console", headers={**preflight, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in answer.headers
    assert host_allowed("localhost:8000", "127.0.0.1", []) and host_allowed("[::1]:8000", "::1", [])
    assert not host_allowed("evil.example", "127.0.0.1", []) and host_allowed("anything", "0.0.0.0", [])
    assert origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000", False, [])
    assert not origin_allowed("http://127.0.0.1:8000", "127.0.0.1:8000", True, [])
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8000", False, [])


def test_nothing_served_carries_a_signing_key_or_a_token(tmp_path: Path) -> None:
    """The page, its assets, the API, health, metrics and the stream never contain a key or a token."""
    with serving(tmp_path) as town:
        keys = json.loads((town.state_dir / "keys.json").read_text())
        secrets = [entry["secret"] for entry in keys["keys"].values()] + [town.admin, town.viewer]
        assert town.command(town.admin, "status")[0] == 200
        bodies = [town.client.get(path).text for path in ("/", "/api/town", "/healthz", "/metrics")]
        for asset in STATIC_DIR.rglob("*"):
            if asset.is_file():
                bodies.append(town.client.get(f"/static/{asset.relative_to(STATIC_DIR).as_posix()}").text)
        with town.stream() as ws:
            bodies += [ws.receive_text() for _ in range(5)]
        bodies.append(json.dumps(town.command(town.admin, "health")[1]))
        for body in bodies:
            for secret in secrets:
                assert secret not in body
        page = town.client.get("/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert re.search(r"<script[^>]+src=", page.text) and "<script>" not in page.text  # no inline script


def test_the_town_description_has_the_map_places_and_objects(tmp_path: Path) -> None:
    """/api/town gives the viewer the tile rows, places and objects of the running town."""
    with serving(tmp_path) as town:
        body = town.client.get("/api/town").json()
    assert body["width"] == 48 and len(body["tiles"]) == 48 and all(len(row) == 48 for row in body["tiles"])
    assert body["tiles"][0][0] == "#" and set("".join(body["tiles"])) <= set(body["tile_legend"])
    assert {p["kind"] for p in body["places"]} >= {"home", "office", "park"}
    assert any(o["type"] == "bed" for o in body["objects"]) and body["needs"][0] == "hunger"


def test_healthz_answers_503_with_the_error_when_the_tick_loop_fails(tmp_path: Path) -> None:
    """A phase that raises stops the tick loop; /healthz says error (503) and the server keeps answering."""
    with serving(tmp_path, speed="pause") as town:

        def broken(sim: Any) -> None:
            raise RuntimeError("a bug in a phase")

        town.wait_tick(0)
        town.live.sim.add_phase("broken", broken, after="kpis")
        assert town.command(town.admin, "pause", on=False)[0] == 200
        deadline = time.monotonic() + 10
        while town.client.get("/healthz").status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        body = town.client.get("/healthz").json()
        assert body["status"] == "error" and "a bug in a phase" in body["error"]
        assert "townlet_up 0" in town.client.get("/metrics").text
        status, body = town.command(town.admin, "status")
        assert (status, body["code"]) == (503, "E_UNAVAILABLE")  # at once, not after a timeout


def test_oversized_console_bodies_are_refused_without_reading_them_whole(tmp_path: Path) -> None:
    """A body past server.max_body_bytes gets 400 E_INVALID_ARG, declared or streamed."""
    with serving(tmp_path, ["server.max_body_bytes=1024"]) as town:
        headers = {"Authorization": f"Bearer {town.admin}"}
        big = json.dumps({"cmd": "narrate", "args": {"text": "x" * 5000}}).encode()
        answer = town.client.post("/api/console", content=big, headers=headers)
        assert answer.status_code == 400 and "larger than 1024" in answer.json()["message"]
        answer = town.client.post("/api/console", content=iter([big[:600], big[600:]]), headers=headers)
        assert answer.status_code == 400 and answer.json()["code"] == "E_INVALID_ARG"

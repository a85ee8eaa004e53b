"""`townlet watch`: the terminal dashboard against a live server, in a real terminal (tmux)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from server_support import ServerProcess, issue, post
from townlet.cli.watch import WatchState, render, stream_url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ServerProcess:
    """A live town at 10x."""
    proc = ServerProcess(tmp_path_factory.mktemp("watch") / "state", "--speed", "10x")
    yield proc
    proc.stop()


def capture(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def test_the_dashboard_shows_the_towns_agents_narration_and_health_in_a_terminal(server: ServerProcess) -> None:
    """In a 100x40 tmux terminal the dashboard lists every agent and follows the clock as the town runs."""
    assert shutil.which("tmux"), "tmux is installed by scripts/_system.sh"
    session = f"townlet-watch-{int(time.time() * 1000)}"
    command = f"{sys.executable} -m townlet.cli.main watch {server.url} --refresh 10"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "40", command], check=True)
    try:
        screen = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "agent_7" not in screen:
            time.sleep(0.2)
            screen = capture(session)
        for expected in ("agents (8)", "agent_0", "agent_7", "hun hyg ene soc", "narration", "health", "connected"):
            assert expected in screen, screen
        ticks = [int(t) for t in re.findall(r"tick (\d+)", screen)]
        assert ticks
        later: list[int] = []
        deadline = time.monotonic() + 60  # a few ticks at 1x usually take 1.5 s; a loaded machine draws slower
        while time.monotonic() < deadline and not (later and later[0] > ticks[0]):
            time.sleep(0.2)
            later = [int(t) for t in re.findall(r"tick (\d+)", capture(session))]
        assert later and later[0] > ticks[0]  # the screen follows the running town
        Path("artifacts").mkdir(exist_ok=True)
        Path("artifacts/watch.txt").write_text(capture(session), encoding="utf-8")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_the_dashboard_shows_spawned_agents_and_operator_narration(server: ServerProcess) -> None:
    """After a spawn and a narrate command, a --once frame lists the newcomer and the line."""
    admin = issue(server.state_dir, "admin", "watcher-admin")
    assert post(server.url, admin, "spawn", agent="visitor_w")[0] == 200
    assert post(server.url, admin, "narrate", text="The mayor waves at the crowd.")[0] == 200
    time.sleep(0.5)
    done = subprocess.run(
        [sys.executable, "-m", "townlet.cli.main", "watch", server.url, "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert done.returncode == 0, done.stderr
    assert "visitor_w" in done.stdout and "The mayor waves at the crowd." in done.stdout


def test_the_dashboard_state_follows_snapshots_and_diffs_and_notices_gaps() -> None:
    """WatchState rebuilds the state from a snapshot and diffs; a diff that skips a tick asks to reconnect."""
    view = WatchState("ws://x/ws/telemetry")
    state = {
        "tick": 5,
        "clock": {"day": 0, "time": "00:07", "tick_of_day": 5, "ticks_per_day": 1000},
        "agents": {
            "a": {
                "slot": 0,
                "x": 1,
                "y": 1,
                "needs": dict.fromkeys(("hunger", "hygiene", "energy", "social"), 0.1),
                "wallet": 2.0,
                "inventory": {},
                "activity": "idle",
                "asleep": False,
                "personality": {},
            }
        },
        "objects": {},
        "economy": {"treasury": 1.0},
        "weather": {"state": "sunny"},
        "utilities": {"power_off": [], "water_off": []},
        "kpis": {},
        "narration": [],
    }
    assert view.feed(orjson.dumps({"type": "snapshot", "tick": 5, "state": state}))
    assert view.feed(orjson.dumps({"type": "diff", "tick": 6, "patch": {"tick": 6, "agents": {"a": {"x": 2}}}}))
    assert view.state["agents"]["a"]["x"] == 2
    assert view.feed(orjson.dumps({"type": "event", "tick": 6, "kind": "chat", "agent": "a"}))
    assert not view.feed(orjson.dumps({"type": "diff", "tick": 9, "patch": {}}))
    assert view.gaps == 1 and view.state is None
    assert stream_url("http://h:1") == "ws://h:1/ws/telemetry" and stream_url("https://h") == "wss://h/ws/telemetry"
    assert stream_url("ws://h:1/ws/telemetry") == "ws://h:1/ws/telemetry"
    assert render(view) is not None

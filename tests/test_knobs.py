"""Knobs that used to be numbers in code: the scripted night-sleep level, ties shown, the live stall test."""

from __future__ import annotations

import time
from pathlib import Path

from townlet.config.loader import load_config
from townlet.server.live import LiveTown
from townlet.telemetry.state import StateBuilder


def test_the_scripted_routines_night_sleep_level_is_options_night_energy(make_sim) -> None:
    """options.night_energy decides when the routine goes to bed at night: another level, another town."""
    default, sleepy = make_sim(seed=1), make_sim(seed=1, overrides=["options.night_energy=0.9"])
    default.run(1500)
    sleepy.run(1500)
    assert default.config.options.night_energy == 0.15
    assert default.state_hash() != sleepy.state_hash()


def test_telemetry_shows_as_many_ties_as_agents_observe(make_sim) -> None:
    """An agent's friends and rivals in the state are capped at observations.social_top."""
    for top in (1, 3):
        sim = make_sim(seed=2, overrides=["features.relationships=C1", f"observations.social_top={top}"])
        sim.run(1500)
        agents = StateBuilder(sim).build()["agents"].values()
        shown = [len(a.get("ties", {}).get(kind, [])) for a in agents for kind in ("friends", "rivals")]
        assert max(shown) == top  # seed 2: some agent has more friends than one, and three


class _Running:
    def is_alive(self) -> bool:
        return True


def test_healthz_calls_a_running_town_stalled_after_server_stall_after_s(tmp_path: Path) -> None:
    """No tick for longer than server.stall_after_s (and stall_after_ticks intervals) reads stalled."""
    for limit, expected in ((10.0, "ok"), (2.0, "stalled")):
        loaded = load_config(
            overrides=[
                f"console.state_dir={tmp_path}",
                f"server.stall_after_s={limit}",
                "server.stall_after_ticks=1",
                "server.speed=1x",
            ]
        )
        live = LiveTown.build(loaded, seed=0)
        live._thread = _Running()  # type: ignore[assignment]  # a tick loop that is alive and silent
        live.stats.last_tick_at = time.monotonic() - 3.0
        assert live.status()["status"] == expected

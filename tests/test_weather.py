"""Tests for the weather schedule and for utility faults and repairs."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.config.loader import load_config
from townlet.world.events import EventKind
from townlet.world.rng import RngStreams
from townlet.world.state import World
from townlet.world.weather import WEATHER_STATES

CYCLE = "weather.transitions={sunny: {rainy: 1.0}, rainy: {cold: 1.0}, cold: {sunny: 1.0}}"


def make_world(*overrides: str, seed: int = 0) -> World:
    return World(load_config(overrides=list(overrides)), RngStreams(seed))


def weather_run(world: World, ticks: int) -> list[tuple[int, str]]:
    """Run the weather rule for ticks 0..ticks-1 and return (tick, new state) for each change."""
    changes = []
    for tick in range(ticks):
        world.tick = tick
        world.events = []
        world.weather.update(world)
        changes += [(tick, e.detail) for e in world.events if e.kind is EventKind.WEATHER_CHANGED]
    return changes


def test_weather_starts_sunny() -> None:
    """A new town starts in sunny weather."""
    assert make_world().weather.name == "sunny"


def test_weather_changes_on_schedule_by_the_transition_table() -> None:
    """With a deterministic cycle the weather moves sunny -> rainy -> cold -> sunny every change_every ticks."""
    world = make_world(CYCLE, "weather.change_every=100")
    changes = weather_run(world, 401)
    assert changes == [(100, "rainy"), (200, "cold"), (300, "sunny"), (400, "rainy")]


def test_weather_only_changes_on_schedule_ticks() -> None:
    """Over several days with the default table, changes happen only on multiples of change_every."""
    world = make_world(seed=3)
    every = world.config.weather.change_every
    changes = weather_run(world, 20 * every + 1)
    assert changes, "the default table changes the weather now and then"
    assert all(tick % every == 0 and tick > 0 for tick, _ in changes)
    assert {state for _, state in changes} == set(WEATHER_STATES)


def test_weather_draws_from_the_events_stream_only() -> None:
    """Weather updates use the events stream and leave the world and policy streams untouched."""
    world = make_world(seed=1)
    rng = world.rng
    before = rng.state()
    weather_run(world, 2000)
    after = rng.state()
    assert after["world"] == before["world"] and after["policy"] == before["policy"]
    assert after["events"] != before["events"]


def test_weather_sequence_is_reproducible_per_seed() -> None:
    """The same seed gives the same weather changes; another seed gives different ones."""
    runs = [weather_run(make_world(seed=s), 30_000) for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_weather_transition_frequencies_follow_the_table() -> None:
    """Over many scheduled draws, each row's empirical transition frequencies are close to the configured ones."""
    world = make_world(seed=2)
    matrix = world.weather.matrix
    counts = np.zeros((3, 3))
    every = world.weather.every
    for k in range(1, 6001):
        world.tick = k * every
        src = world.weather.state
        world.weather.update(world)
        counts[src, world.weather.state] += 1
    freq = counts / counts.sum(axis=1, keepdims=True)
    assert np.abs(freq - matrix).max() < 0.05


def test_forced_weather_is_announced_once() -> None:
    """Setting the weather emits WEATHER_CHANGED only when the state actually changes."""
    world = make_world()
    world.weather.set(world, "cold")
    world.weather.set(world, "cold")
    assert [e.detail for e in world.events if e.kind is EventKind.WEATHER_CHANGED] == ["cold"]
    assert world.weather.is_cold and not world.weather.is_raining
    with pytest.raises(ValueError):
        world.weather.set(world, "snowy")


def place(world: World, place_id: str) -> int:
    return world.objects.place_ids.index(place_id)


def test_utility_outage_and_scheduled_repair() -> None:
    """Switching power off at one place cuts only that place, fires the power-cut hook, and heals on schedule."""
    world = make_world()
    u, gym = world.utilities, place(world, "gym")
    u.set(world, "power", False, gym, until=50)
    assert not u.power_on[gym] and u.power_on.sum() == len(u.power_on) - 1 and u.water_on.all()
    assert world.hooks.stats["power_cut_failures"] == 1
    changed = [e for e in world.events if e.kind is EventKind.UTILITY_CHANGED]
    assert [(e.value, e.detail) for e in changed] == [(0.0, "power:gym")]
    for tick in range(1, 50):
        world.tick = tick
        u.update(world)
    assert not u.power_on[gym]
    world.tick = 50
    u.update(world)
    assert u.power_on.all() and not u.repairs


def test_town_wide_water_outage_without_repair_lasts_until_switched_back() -> None:
    """An outage with no repair time stays until switched back on; place=None covers every place."""
    world = make_world()
    u = world.utilities
    u.set(world, "water", False)
    for tick in range(1, 300):
        world.tick = tick
        u.update(world)
    assert not u.water_on.any() and u.power_on.all()
    u.set(world, "water", True)
    assert u.water_on.all()


def test_random_faults_last_within_the_configured_fault_duration() -> None:
    """With a fault rate set, faults happen on the events stream and each lasts between the configured bounds."""
    world = make_world("utilities.fault_rate_per_day=100", "utilities.fault_duration=[10, 30]", seed=0)
    u = world.utilities
    lo, hi = world.config.utilities.fault_duration
    world_stream = world.rng.state()["world"]
    down_since: dict[str, int] = {}  # 'power:gym' -> tick it went off
    outages = []
    for tick in range(1, 3001):
        world.tick = tick
        world.events = []
        u.update(world)
        for e in world.events:
            assert e.kind is EventKind.UTILITY_CHANGED
            if e.value == 0.0:
                assert e.detail not in down_since
                down_since[e.detail] = tick
            else:
                outages.append(tick - down_since.pop(e.detail))
    assert len(outages) > 20
    assert all(lo <= d <= hi for d in outages), sorted(outages)[:5]
    assert world.rng.state()["world"] == world_stream
    assert all(t > 3000 - hi for t in down_since.values()), "only recent faults may still be open"


def test_open_ended_outage_is_not_ended_by_an_earlier_repair() -> None:
    """A blackout with no end, switched on during a timed fault, outlasts that fault's scheduled repair."""
    world = make_world()
    u, gym = world.utilities, place(world, "gym")
    u.set(world, "power", False, gym, until=20)
    u.set(world, "power", False, gym)
    for tick in range(1, 100):
        world.tick = tick
        u.update(world)
    assert not u.power_on[gym]


def test_a_later_repair_time_replaces_an_earlier_one() -> None:
    """Re-scheduling an outage's repair moves it: the place heals at the new time, not the old one."""
    world = make_world()
    u, cafe = world.utilities, place(world, "cafe")
    u.set(world, "water", False, cafe, until=10)
    u.set(world, "water", False, cafe, until=40)
    healed = None
    for tick in range(1, 60):
        world.tick = tick
        u.update(world)
        if healed is None and u.water_on[cafe]:
            healed = tick
    assert healed == 40


def test_no_faults_by_default() -> None:
    """With the default config, utilities stay on for days."""
    world = make_world()
    for tick in range(1, 5001):
        world.tick = tick
        world.utilities.update(world)
    assert world.utilities.power_on.all() and world.utilities.water_on.all()

"""Tests for need growth: rates, sleep and cold multipliers, clipping, threshold events and collapse."""

from __future__ import annotations

import numpy as np
import pytest

from townlet.config.loader import load_config
from townlet.config.models import NEED_NAMES
from townlet.world.events import EventKind
from townlet.world.needs import ENERGY, HUNGER, HYGIENE, SOCIAL
from townlet.world.rng import RngStreams
from townlet.world.state import World

INDOOR, OUTDOOR = (2, 4), (20, 11)  # a home floor tile and a main-street tile


def make_world(*overrides: str, agents: int = 2) -> World:
    """Agent 0 indoors at home, agent 1 outdoors on the street; all needs at 0.2."""
    world = World(load_config(overrides=[f"population.agents={agents}", *overrides]), RngStreams(0))
    for tile in (INDOOR, OUTDOOR)[:agents]:
        world.spawn(tile=world.grid.tile(*tile))
    world.agents.needs[:agents] = 0.2
    return world


def growth(world: World, slot: int) -> np.ndarray:
    """Need growth of one agent over one tick of decay."""
    before = world.agents.needs[slot].copy()
    world.needs.decay(world)
    return world.agents.needs[slot] - before


def test_needs_grow_by_the_configured_rates() -> None:
    """Each tick hunger, hygiene and energy grow by their configured rate; social is still at stage B."""
    world = make_world()
    rates = world.config.needs.decay
    got = growth(world, 0)
    for k in (HUNGER, HYGIENE, ENERGY):
        assert got[k] == pytest.approx(rates[NEED_NAMES[k]], abs=1e-7)
    assert got[SOCIAL] == 0.0


def test_social_need_grows_from_stage_c() -> None:
    """At relationship stage C1 the social need grows at its configured rate."""
    world = make_world("features.relationships=C1", "needs.decay.social=0.002")
    assert growth(world, 0)[SOCIAL] == pytest.approx(0.002, abs=1e-7)


def test_rates_come_from_config() -> None:
    """Overriding a decay rate changes how fast that need grows."""
    world = make_world("needs.decay.hunger=0.01", "needs.decay.energy=0.0")
    got = growth(world, 0)
    assert got[HUNGER] == pytest.approx(0.01, abs=1e-7) and got[ENERGY] == 0.0


def test_asleep_agents_grow_needs_at_the_asleep_multiplier() -> None:
    """A sleeping agent's hunger and hygiene grow at half rate (default multipliers); energy at full rate."""
    world = make_world()
    cfg = world.config.needs
    world.agents.asleep[0] = True
    got = growth(world, 0)
    assert got[HUNGER] == pytest.approx(cfg.decay["hunger"] * cfg.asleep_multiplier["hunger"], abs=1e-7)
    assert got[HYGIENE] == pytest.approx(cfg.decay["hygiene"] * cfg.asleep_multiplier["hygiene"], abs=1e-7)
    assert got[ENERGY] == pytest.approx(cfg.decay["energy"], abs=1e-7)
    assert got[HUNGER] < growth(world, 1)[HUNGER], "the awake agent gets hungrier faster"


def test_cold_weather_raises_energy_decay_outdoors_only() -> None:
    """When cold, an outdoor agent's energy grows cold_energy_multiplier times faster; indoors it does not."""
    world = make_world()
    rate, mult = world.config.needs.decay["energy"], world.config.weather.cold_energy_multiplier
    world.weather.set(world, "cold")
    before = world.agents.needs[:2].copy()
    world.needs.decay(world)
    got = world.agents.needs[:2] - before
    assert got[0, ENERGY] == pytest.approx(rate, abs=1e-7)
    assert got[1, ENERGY] == pytest.approx(rate * mult, abs=1e-7)
    assert got[1, HUNGER] == pytest.approx(got[0, HUNGER]), "cold touches only energy"


@pytest.mark.parametrize("weather", ["sunny", "rainy"])
def test_outdoor_energy_decay_is_normal_unless_cold(weather: str) -> None:
    """In sun or rain an outdoor agent's energy grows at the plain rate."""
    world = make_world()
    world.weather.set(world, weather)
    assert growth(world, 1)[ENERGY] == pytest.approx(world.config.needs.decay["energy"], abs=1e-7)


def test_needs_are_clipped_to_one() -> None:
    """A need about to pass 1 stops at exactly 1, and a need at 1 stays there."""
    world = make_world()
    world.agents.needs[0] = (0.9999, 1.0, 0.0, 0.0)
    for _ in range(5):
        world.needs.decay(world)
    assert world.agents.needs[0, HUNGER] == 1.0 and world.agents.needs[0, HYGIENE] == 1.0
    assert (world.agents.needs[:2] >= 0).all() and (world.agents.needs[:2] <= 1).all()


def test_empty_slots_do_not_change() -> None:
    """Decay only touches living agents; a removed agent's row is left alone."""
    world = make_world()
    world.remove(1)
    frozen = world.agents.needs[1:].copy()
    world.needs.decay(world)
    assert np.array_equal(world.agents.needs[1:], frozen)


def test_crossing_the_critical_level_raises_one_threshold_event() -> None:
    """A need crossing needs.critical emits NEED_THRESHOLD once, naming the need; staying above is silent."""
    world = make_world()
    critical = world.config.needs.critical
    world.agents.needs[0, HYGIENE] = critical - 0.0001
    world.needs.decay(world)
    events = [e for e in world.events if e.kind is EventKind.NEED_THRESHOLD]
    assert [(e.agent, e.detail) for e in events] == [(0, "hygiene")]
    world.events.clear()
    for _ in range(20):
        world.needs.decay(world)
    assert not [e for e in world.events if e.kind is EventKind.NEED_THRESHOLD]


def test_collapse_after_collapse_ticks_at_the_collapse_level() -> None:
    """Hunger at the collapse level for collapse_ticks ticks raises exactly one COLLAPSE event, on that tick."""
    world = make_world()
    cfg = world.config.needs
    world.agents.needs[0, HUNGER] = cfg.collapse_level
    collapses = []
    for tick in range(1, cfg.collapse_ticks + 20):
        world.tick = tick
        world.events = []
        world.needs.decay(world)
        collapses += [(e.tick, e.agent) for e in world.events if e.kind is EventKind.COLLAPSE]
    assert collapses == [(cfg.collapse_ticks, 0)]


def test_eating_resets_the_collapse_count() -> None:
    """Dropping below the collapse level restarts the count, so a short relapse does not collapse."""
    world = make_world("needs.collapse_ticks=10")
    level = world.config.needs.collapse_level
    world.agents.needs[0, HUNGER] = level
    for _ in range(9):
        world.needs.decay(world)
    world.agents.needs[0, HUNGER] = 0.3
    world.needs.decay(world)
    world.agents.needs[0, HUNGER] = level
    for _ in range(9):
        world.needs.decay(world)
    assert not [e for e in world.events if e.kind is EventKind.COLLAPSE]
    world.needs.decay(world)
    assert [e.agent for e in world.events if e.kind is EventKind.COLLAPSE] == [0]


def test_spawned_agents_start_with_the_configured_needs() -> None:
    """A newcomer's needs are needs.initial, with social at 0 while the social need is off."""
    world = World(load_config(), RngStreams(0))
    slot = world.spawn()
    initial = world.config.needs.initial
    expected = [initial["hunger"], initial["hygiene"], initial["energy"], 0.0]
    assert np.allclose(world.agents.needs[slot], expected)


def test_zero_collapse_ticks_collapses_only_the_starving_at_once() -> None:
    """With collapse_ticks 0 an agent at the collapse level collapses on its first tick there; nobody else does."""
    world = make_world("needs.collapse_ticks=0")
    world.agents.needs[1, HUNGER] = world.config.needs.collapse_level
    world.needs.decay(world)
    assert [e.agent for e in world.events if e.kind is EventKind.COLLAPSE] == [1]
    world.events.clear()
    world.needs.decay(world)
    assert not [e for e in world.events if e.kind is EventKind.COLLAPSE]

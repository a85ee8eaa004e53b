"""Tests for walking: shortest paths, one agent per indoor tile, collisions, ghost steps, and rain."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from townlet.config.loader import load_config
from townlet.world import actions
from townlet.world.agents import Activity
from townlet.world.events import EventKind
from townlet.world.rng import RngStreams
from townlet.world.state import World

PATIENCE = 3


def make_world(*overrides: str, agents: int = 4, seed: int = 0) -> World:
    """A world with ``agents`` agents spread along the main street, neutral patience, sunny weather."""
    world = World(load_config(overrides=[f"population.agents={agents}", *overrides]), RngStreams(seed))
    for i in range(agents):
        world.spawn(tile=world.grid.tile(2 + 3 * i, 11))
    world.agents.personality[:] = 0.0
    assert world.weather.name == "sunny"
    return world


def advance(world: World, ticks: int = 1) -> None:
    """The world's share of a tick: queues, movement and starts, then running affordances."""
    for _ in range(ticks):
        world.arbitrate()
        actions.progress(world)
        world.tick += 1


def send(world: World, slot: int, object_id: str, aff: str) -> int:
    obj = world.objects.index_of[object_id]
    world.go_use(slot, obj, world.manifest.by_id[aff].index)
    return obj


def next_tile(world: World, slot: int) -> int:
    """Where the agent's distance field sends it next."""
    a, g = world.agents, world.grid
    here = int(a.tile[slot])
    return here + int(g.offsets[g.step_at(int(a.dest_field[slot]), here)])


def bfs_distance(world: World, start: int, goals: tuple[int, ...]) -> int:
    g = world.grid
    seen, todo = {start: 0}, deque([start])
    while todo:
        t = todo.popleft()
        if t in goals:
            return seen[t]
        for off in g.offsets[1:]:
            n = t + int(off)
            if 0 <= n < g.size and g.walkable[n] and n not in seen and abs(g.xy(n)[0] - g.xy(t)[0]) <= 1:
                seen[n] = seen[t] + 1
                todo.append(n)
    raise AssertionError("goal unreachable")


def test_walk_follows_a_shortest_path_and_never_stands_on_a_wall() -> None:
    """An agent walking from a home to a park bench takes exactly the BFS number of steps, one tile at a time."""
    world = make_world(agents=1)
    start = world.grid.tile(2, 4)  # inside home_0
    world.teleport(0, start)
    bench = send(world, 0, "park.bench.0", "sit")
    expected = bfs_distance(world, start, world.objects.access[bench])
    assert expected > 30
    path = [start]
    for _ in range(expected + 5):
        advance(world)
        here = int(world.agents.tile[0])
        assert world.grid.walkable[here]
        if here != path[-1]:
            (x0, y0), (x1, y1) = world.grid.xy(path[-1]), world.grid.xy(here)
            assert abs(x1 - x0) + abs(y1 - y0) == 1
            path.append(here)
    assert len(path) - 1 == expected
    assert path[-1] in world.objects.access[bench]
    assert world.agents.activity[0] == Activity.USING and world.objects.user[bench] == 0


def test_occupied_indoor_tile_refuses_a_teleport_but_outdoor_tile_accepts_many() -> None:
    """An indoor tile holds one agent; an outdoor tile holds any number."""
    world = make_world(agents=3)
    indoor, outdoor = world.grid.tile(3, 16), world.grid.tile(16, 11)
    world.teleport(0, indoor)
    with pytest.raises(ValueError):
        world.teleport(1, indoor)
    world.teleport(1, outdoor)
    world.teleport(2, outdoor)
    assert world.occupancy[outdoor] == 2 and world.occupancy[indoor] == 1
    with pytest.raises(ValueError):
        world.teleport(0, world.grid.tile(0, 0))  # a wall


def test_walker_is_blocked_by_an_agent_standing_on_an_indoor_tile() -> None:
    """A walker whose next indoor tile is held by a standing agent stays put and counts the block."""
    world = make_world(agents=2)
    world.teleport(0, world.grid.tile(3, 20))  # grocer floor, walking to the till
    send(world, 0, "grocer.till.0", "checkout")
    ahead = next_tile(world, 0)
    assert not world.grid.outdoors[ahead]
    world.teleport(1, ahead)
    before = int(world.agents.tile[0])
    advance(world, 3)
    assert world.agents.tile[0] == before and world.agents.blocked[0] == 3
    assert world.occupancy[ahead] == 1


def test_walker_passes_an_agent_standing_on_an_outdoor_tile() -> None:
    """On the street a walker steps onto a tile another agent stands on."""
    world = make_world(agents=2)
    world.teleport(0, world.grid.tile(2, 11))
    send(world, 0, "home_7.bed.0", "nap")
    ahead = next_tile(world, 0)
    assert world.grid.outdoors[ahead]
    world.teleport(1, ahead)
    advance(world)
    assert world.agents.tile[0] == ahead and world.agents.blocked[0] == 0
    assert world.occupancy[ahead] == 2


def test_follower_steps_into_the_tile_its_leader_leaves() -> None:
    """Two agents walking in single file indoors both advance every tick (a leaving agent does not block)."""
    world = make_world("queues.reserve_radius=0", agents=2)
    g = world.grid
    world.teleport(0, g.tile(6, 15))
    till = send(world, 0, "grocer.till.0", "checkout")
    f, lead = world.objects.field_of(till), int(world.agents.tile[0])
    neighbours = [int(lead - off) for off in g.offsets[1:] if g.walkable[lead - off]]
    behind = next(n for n in neighbours if g.step_at(f, n) > 0 and n + g.offsets[g.step_at(f, n)] == lead)
    assert not g.outdoors[behind]
    world.teleport(1, behind)
    send(world, 1, "grocer.till.0", "checkout")
    assert next_tile(world, 1) == world.agents.tile[0]
    for _ in range(3):
        t0, t1 = int(world.agents.tile[0]), int(world.agents.tile[1])
        advance(world)
        assert world.agents.tile[0] != t0 and world.agents.tile[1] != t1
    assert world.counters["ghost_steps"] == 0


def converging_pair(world: World, object_id: str) -> tuple[int, int, int]:
    """Two free indoor tiles whose next step toward the object is the same free indoor tile."""
    g, obj = world.grid, world.objects.index_of[object_id]
    f = world.objects.field_of(obj)
    into: dict[int, list[int]] = {}
    for t in np.flatnonzero(g.walkable & ~g.outdoors & (g.fields.step_row(f) > 0) & (g.fields.dist_row(f) >= 2)):
        n = int(t + g.offsets[g.step_at(f, t)])
        if not g.outdoors[n] and g.dist_at(f, n) >= 1 and world.occupancy[t] == 0 and world.occupancy[n] == 0:
            into.setdefault(n, []).append(int(t))
    target, sources = next((n, s) for n, s in sorted(into.items()) if len(s) >= 2)
    return sources[0], sources[1], target


@pytest.mark.parametrize("first", [0, 1])
def test_two_agents_stepping_into_one_indoor_tile_only_one_moves(first: int) -> None:
    """When two walkers aim at the same indoor tile in one tick, the less patient one moves, the other waits."""
    world = make_world("queues.reserve_radius=0", agents=2)
    p0, p1, target = converging_pair(world, "office.desk.0")
    world.teleport(0, p0)
    world.teleport(1, p1)
    for slot in (0, 1):
        send(world, slot, "office.desk.0", "work")
    world.agents.personality[first, PATIENCE] = -0.8
    world.agents.personality[1 - first, PATIENCE] = 0.8
    advance(world)
    assert world.agents.tile[first] == target
    assert world.agents.tile[1 - first] == (p1 if first == 0 else p0)
    assert world.agents.blocked[1 - first] == 1 and world.agents.blocked[first] == 0
    assert world.occupancy[target] == 1


@pytest.mark.parametrize("ghost_after", [3, 8])
def test_walker_blocked_ghost_after_times_takes_a_counted_ghost_step(ghost_after: int) -> None:
    """After ghost_after blocked attempts a walker steps through the blocker; the step is counted and logged."""
    world = make_world(f"queues.ghost_after={ghost_after}", agents=2)
    world.teleport(0, world.grid.tile(3, 20))
    send(world, 0, "grocer.till.0", "checkout")
    ahead = next_tile(world, 0)
    world.teleport(1, ahead)
    start = int(world.agents.tile[0])
    for _ in range(ghost_after - 1):
        advance(world)
    assert world.agents.tile[0] == start and world.counters["ghost_steps"] == 0
    world.events = []
    advance(world)
    assert world.agents.tile[0] == ahead and world.agents.tile[1] == ahead
    assert world.counters["ghost_steps"] == 1
    ghosts = [e for e in world.events if e.kind is EventKind.GHOST_STEP]
    assert [(e.agent, e.other, int(e.value)) for e in ghosts] == [(0, 1, ahead)]
    assert world.relationships.tie(1, 0) is not None, "the pushed agent notices who pushed through"
    advance(world)
    assert world.agents.tile[0] != ahead and world.occupancy[ahead] == 1


def outdoor_steps(world: World, ticks: int) -> int:
    """Steps agent 0 takes over ``ticks`` ticks walking east along the main street."""
    world.teleport(0, world.grid.tile(0, 11))
    send(world, 0, "home_7.bed.0", "nap")
    steps = 0
    for _ in range(ticks):
        here = int(world.agents.tile[0])
        advance(world)
        if world.agents.tile[0] != here:
            assert world.grid.outdoors[here] and world.grid.outdoors[world.agents.tile[0]]
            steps += 1
    return steps


@pytest.mark.parametrize("cost", [1.5, 2.0, 3.0])
def test_rain_slows_outdoor_walking_by_rain_move_cost(cost: float) -> None:
    """In rain an outdoor walker takes one step per rain_move_cost ticks; in sun one per tick."""
    ticks = 30
    sunny = make_world(f"weather.rain_move_cost={cost}", agents=1)
    assert outdoor_steps(sunny, ticks) == ticks
    rainy = make_world(f"weather.rain_move_cost={cost}", agents=1)
    rainy.weather.set(rainy, "rainy")
    assert abs(outdoor_steps(rainy, ticks) - ticks / cost) <= 1


def test_rain_does_not_slow_indoor_walking() -> None:
    """Indoors, rain changes nothing: a walker inside the grocer still steps every tick."""
    world = make_world("weather.rain_move_cost=3.0", "queues.reserve_radius=0", agents=1)
    world.weather.set(world, "rainy")
    world.teleport(0, world.grid.tile(2, 14))
    send(world, 0, "grocer.till.0", "checkout")
    for _ in range(8):
        here = int(world.agents.tile[0])
        assert not world.grid.outdoors[here]
        advance(world)
        assert world.agents.tile[0] != here


def test_occupancy_always_counts_the_agents_on_each_tile() -> None:
    """After a busy stretch of walking, occupancy equals the number of living agents on every tile."""
    world = make_world(agents=8)
    targets = ["grocer.till.0", "cafe.counter_service.0", "gym.shower.0", "park.bench.3"]
    affs = ["checkout", "order_meal", "shower", "sit"]
    for slot in range(8):
        send(world, slot, targets[slot % 4], affs[slot % 4])
    for _ in range(60):
        advance(world)
        counts = np.bincount(world.agents.tile[world.agents.alive], minlength=world.grid.size)
        assert np.array_equal(world.occupancy, counts)
        assert world.grid.walkable[world.agents.tile[world.agents.alive]].all()

"""Routes in tiled towns (town.scale >= 2): closed places and rain costs hold across the seams between copies."""

from __future__ import annotations

import pytest

from test_grid import bfs
from townlet.config.loader import load_config
from townlet.sim.simulation import Simulation
from townlet.world import actions
from townlet.world.grid import FAR
from townlet.world.state import World


def tiled(scale: int = 2, *overrides: str) -> Simulation:
    """A tiled town with one agent, neutral personality, sunny."""
    sim = Simulation(load_config(overrides=[f"town.scale={scale}", "population.agents=1", *overrides]), seed=0)
    sim.world.agents.personality[:] = 0.0
    return sim


def walk(world: World, slot: int, obj: int, aff: str, limit: int = 2000) -> list[int]:
    """Send the agent to use ``obj`` and step the world until it stops walking; the tiles it stood on."""
    world.go_use(slot, obj, world.manifest.by_id[aff].index)
    path = [int(world.agents.tile[slot])]
    for _ in range(limit):
        world.arbitrate()
        actions.progress(world)
        world.tick += 1
        here = int(world.agents.tile[slot])
        if here != path[-1]:
            path.append(here)
        if int(world.agents.dest_field[slot]) < 0 or world.objects.user[obj] == slot:
            break
    return path


def block_of(world: World, tile: int, scale: int) -> tuple[int, int]:
    x, y = world.grid.xy(tile)
    return x * scale // world.grid.width, y * scale // world.grid.height


def test_a_closed_place_sends_the_shopper_to_the_nearest_open_copy_across_the_seam() -> None:
    """Tiled 2x2: its block's grocer closed, the shopper's nearest open till is in another block; it walks there."""
    sim = tiled(2)
    w, o, ctl = sim.world, sim.world.objects, sim.controller
    tills = tuple(
        i for i in range(o.count) if o.types[i] == "till" and o.place_ids[int(o.place[i])].startswith("grocer")
    )
    assert len(tills) == 4
    start = w.grid.tile(2, 11)  # the main street of block (0, 0)
    w.teleport(0, start)
    home = ctl._choose(0, tills)
    assert block_of(w, int(o.y[home]) * w.grid.width + int(o.x[home]), 2) == (0, 0)
    w.place_open[int(o.place[home])] = False
    chosen = ctl._choose(0, tills)
    assert chosen >= 0 and chosen != home
    target = int(o.y[chosen]) * w.grid.width + int(o.x[chosen])
    assert block_of(w, target, 2) != (0, 0)
    # the nearest open till by plain BFS walking distance (to a tile next to it, where it is used from)
    distance = {t: w.grid.dist_at(o.field_of(t), start) for t in tills}
    assert distance[chosen] == min(d for t, d in distance.items() if w.place_open[int(o.place[t])])
    assert distance[chosen] < FAR
    path = walk(w, 0, chosen, "checkout")
    assert all(w.grid.walkable[t] for t in path)
    assert all(abs(a - b) in (1, w.grid.width) for a, b in zip(path, path[1:], strict=False))  # one tile a step
    assert w.grid.place_index[path[-1]] == o.place[chosen]  # it arrived in the open grocer
    assert len(path) - 1 == distance[chosen] == bfs(w.grid, [path[-1]])[start]  # a shortest route, by plain BFS
    for t in tills:  # a closed place is never chosen, whichever blocks stay open
        w.place_open[int(o.place[t])] = t == tills[-1]
    assert ctl._choose(0, tills) == tills[-1]
    w.place_open[int(o.place[tills[-1]])] = False
    assert ctl._choose(0, tills) == -1


@pytest.mark.parametrize("cost", [2.0, 3.0])
def test_rain_slows_a_walk_across_the_seam_by_its_cost_outdoors_only(cost: float) -> None:
    """Tiled 2x2: rain makes a cross-block walk's outdoor steps take `cost` ticks, indoor ones 1; the route stays."""
    runs = {}
    for weather in ("sunny", "rainy"):
        sim = tiled(2, f"weather.rain_move_cost={cost}")
        w, o = sim.world, sim.world.objects
        if weather == "rainy":
            w.weather.set(w, "rainy")
        w.teleport(0, w.grid.tile(2, 11))
        desk = next(
            i for i in range(o.count) if o.types[i] == "table" and o.place_ids[int(o.place[i])].endswith("@1,1")
        )
        t0 = w.tick
        path = walk(w, 0, desk, "sit")
        runs[weather] = (path, w.tick - t0)
        assert block_of(w, path[-1], 2) == (1, 1)
    (sun_path, sun_ticks), (rain_path, rain_ticks) = runs["sunny"], runs["rainy"]
    assert rain_path == sun_path
    g = sim.world.grid
    outdoor = sum(bool(g.outdoors[a]) for a in rain_path[:-1])  # steps that start outdoors
    indoor = len(rain_path) - 1 - outdoor
    assert outdoor > 40  # the route crosses the town's streets
    assert abs(rain_ticks - (indoor + outdoor * cost)) <= 3
    assert abs(sun_ticks - (len(sun_path) - 1)) <= 2

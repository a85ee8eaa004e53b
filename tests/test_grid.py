"""Tests for the flat grid and its cached distance fields with next-step hints."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from townlet.config.loader import load_config
from townlet.config.town_map import TileKind, load_town_map, parse_town_map, tile_town_map
from townlet.world.grid import EAST, FAR, NORTH, SOUTH, STAY, UNREACHABLE, WEST, Grid


@pytest.fixture(scope="module")
def grid() -> Grid:
    return Grid(load_town_map(load_config().map_path))


def bfs(grid: Grid, goals: list[int]) -> np.ndarray:
    """Plain breadth-first distances over walkable tiles (-1 where unreachable)."""
    dist = np.full(grid.size, -1, dtype=np.int64)
    todo = deque()
    for g in goals:
        assert grid.walkable[g], f"goal {grid.xy(g)} is not walkable"
        dist[g] = 0
        todo.append(g)
    while todo:
        t = todo.popleft()
        x, y = grid.xy(t)
        for nx, ny in ((x, y - 1), (x + 1, y), (x, y + 1), (x - 1, y)):
            if 0 <= nx < grid.width and 0 <= ny < grid.height:
                n = grid.tile(nx, ny)
                if grid.walkable[n] and dist[n] < 0:
                    dist[n] = dist[t] + 1
                    todo.append(n)
    return dist


def assert_field_matches_bfs(grid: Grid, goals: list[int]) -> None:
    f = grid.field(goals)
    expected = bfs(grid, goals)
    reach = expected >= 0
    assert np.array_equal(grid.fields.dist_row(f)[reach], expected[reach])
    assert (grid.fields.dist_row(f)[~reach] == FAR).all()
    assert (grid.fields.step_row(f)[~reach] == UNREACHABLE).all()


def test_tile_and_xy_are_inverse(grid: Grid) -> None:
    """A flat tile index is y * width + x, and xy() undoes it."""
    assert grid.tile(3, 2) == 2 * grid.width + 3
    for t in (0, 1, grid.width, grid.size - 1, 1234):
        assert grid.tile(*grid.xy(t)) == t


def test_outdoors_is_exactly_road_and_grass(grid: Grid) -> None:
    """Outdoor tiles (which hold any number of agents) are the road and grass tiles."""
    kinds = grid.kinds
    assert np.array_equal(grid.outdoors, (kinds == TileKind.ROAD) | (kinds == TileKind.GRASS))
    assert not grid.outdoors[kinds == TileKind.FLOOR].any() and not grid.outdoors[kinds == TileKind.DOOR].any()


@pytest.mark.parametrize("goal", [(1, 2), (46, 46), (26, 24), (9, 46)])
def test_distance_field_equals_breadth_first_distance(grid: Grid, goal: tuple[int, int]) -> None:
    """The field's distance to a goal is the BFS distance around walls; walls and the unreachable are FAR."""
    assert_field_matches_bfs(grid, [grid.tile(*goal)])


def test_multi_goal_field_is_distance_to_the_nearest_goal(grid: Grid) -> None:
    """A field toward several goals holds, per tile, the minimum of the single-goal distances."""
    goals = [grid.tile(2, 2), grid.tile(45, 40), grid.tile(26, 24)]
    assert_field_matches_bfs(grid, goals)
    single = np.stack([grid.fields.dist_row(grid.field([g])) for g in goals])
    assert np.array_equal(grid.fields.dist_row(grid.field(goals)), single.min(axis=0))


def test_step_hints_lead_downhill_without_touching_walls(grid: Grid) -> None:
    """From every reachable tile the hinted step goes to a walkable neighbour one step nearer the goal."""
    goal = grid.tile(12, 45)
    assert grid.walkable[goal]
    f = grid.field([goal])
    dist, step = grid.fields.dist_row(f), grid.fields.step_row(f)
    assert step[goal] == STAY and dist[goal] == 0
    tiles = np.flatnonzero(step > 0)
    assert len(tiles) == int(grid.walkable.sum()) - 1, "every walkable tile but the goal has a hint"
    nxt = tiles + grid.offsets[step[tiles]]
    assert grid.walkable[nxt].all()
    assert np.array_equal(dist[nxt], dist[tiles] - 1)
    assert set(np.unique(step[tiles]).tolist()) == {NORTH, EAST, SOUTH, WEST}


def test_following_hints_walks_a_shortest_path(grid: Grid) -> None:
    """Walking the hints from a far corner reaches the goal in exactly the BFS distance, on walkable tiles."""
    start, goal = grid.tile(2, 1), grid.tile(44, 36)
    assert grid.walkable[start] and grid.walkable[goal]
    f = grid.field([goal])
    here, steps = start, 0
    while here != goal:
        here += int(grid.offsets[grid.step_at(f, here)])
        steps += 1
        assert grid.walkable[here]
        assert steps <= grid.size
    assert steps == bfs(grid, [goal])[start] == grid.dist_at(f, start)


def test_fields_are_cached_by_goal_set(grid: Grid) -> None:
    """Asking again for the same goals, in any order or repeated, returns the same field without a search."""
    goals = [grid.tile(30, 30), grid.tile(20, 12)]
    f = grid.field(goals)
    count = grid.count
    assert grid.field(list(reversed(goals))) == f
    assert grid.field(goals + goals[:1]) == f
    assert grid.count == count
    assert grid.field([grid.tile(31, 30)]) == count and grid.count == count + 1


def test_many_fields_grow_the_cache_and_keep_earlier_ones(grid: Grid) -> None:
    """Computing many fields keeps every earlier field intact."""
    g = Grid(load_town_map(load_config().map_path))
    first = g.field([g.tile(1, 1)])
    snapshot = g.fields.dist_row(first).copy()
    for x in range(1, 45):
        g.field([g.tile(x, 11)])
    assert g.count == 45
    assert np.array_equal(g.fields.dist_row(first), snapshot)


def test_field_needs_a_goal(grid: Grid) -> None:
    """A field toward no tiles at all is refused."""
    with pytest.raises(ValueError):
        grid.field([])


def test_field_in_a_tiled_town_crosses_block_seams() -> None:
    """In a 2x2 tiled town the steps from the far corner cross the block seams and reach the goal."""
    big = Grid(tile_town_map(load_town_map(load_config().map_path), 2))
    goal = big.tile(2, 1)
    f = big.field([goal])
    here, steps = big.tile(93, 94), 0
    assert big.dist_at(f, here) < FAR
    while here != goal:
        here += int(big.offsets[big.step_at(f, here)])
        steps += 1
        assert big.walkable[here] and steps <= 2 * bfs(big, [goal])[big.tile(93, 94)]


def test_walled_off_pocket_is_unreachable() -> None:
    """Tiles sealed off by walls get no step hint and a FAR distance."""
    town = parse_town_map(
        {
            "name": "pocket",
            "width": 7,
            "height": 4,
            "legend": {",": {"tile": "grass"}, "#": {"tile": "wall"}, "=": {"tile": "road"}},
            "layout": ",,,###,\n,,,#,#,\n,,,###,\n=======\n",
            "places": {"park": {"kind": "park", "rect": [0, 0, 3, 3]}},
            "spawn_tiles": [[0, 3]],
        },
        "pocket.yaml",
    )
    grid = Grid(town)
    f = grid.field([grid.tile(0, 0)])
    pocket = grid.tile(4, 1)
    assert grid.walkable[pocket]
    assert grid.dist_at(f, pocket) == FAR and grid.step_at(f, pocket) == UNREACHABLE
    assert grid.dist_at(f, grid.tile(6, 3)) == bfs(grid, [grid.tile(0, 0)])[grid.tile(6, 3)]


def test_fields_in_a_town_larger_than_a_window_are_exact_near_the_goal_and_lead_there_from_anywhere() -> None:
    """3x3 tiled town: exact BFS distances in the goal's chunk; from any tile, walkable steps reach the goal."""
    big = Grid(tile_town_map(load_town_map(load_config().map_path), 3))
    chunk = load_config().config.town.paths.chunk
    rng = np.random.default_rng(0)
    for goal in (int(g) for g in rng.choice(np.flatnonzero(big.walkable), 3, replace=False)):
        f, expected = big.field([goal]), bfs(big, [goal])
        gx, gy = big.xy(goal)
        x, y = np.arange(big.size) % big.width, np.arange(big.size) // big.width
        near = (expected >= 0) & (x // chunk == gx // chunk) & (y // chunk == gy // chunk)
        assert np.array_equal(big.fields.dist_row(f)[near], expected[near])
        assert (big.fields.step_row(f)[expected < 0] == UNREACHABLE).all()  # walled off stays unreachable
        for start in (int(s) for s in rng.choice(np.flatnonzero(expected >= 0), 100, replace=False)):
            here, steps = start, 0
            while here != goal:
                step = big.step_at(f, here)
                assert step in (NORTH, EAST, SOUTH, WEST)
                here += int(big.offsets[step])
                steps += 1
                assert big.walkable[here]  # through doors, never through walls
            assert steps <= expected[start] + chunk  # the chunk route's detour stays under a chunk's side

"""Tests for the town map file format, the shipped default town, and tiling."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, deque
from pathlib import Path

import numpy as np
import pytest
import yaml

from townlet.config.errors import ConfigError
from townlet.config.town_map import (
    OBJECT_TYPES,
    PLACE_KINDS,
    TileKind,
    TownMap,
    load_town_map,
    parse_town_map,
    tile_town_map,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOWN = ROOT / "src" / "townlet" / "config" / "defaults" / "town.yaml"
HOME_OBJECTS = ("bed", "shower", "fridge", "stove", "wardrobe")
STEPS = ((0, -1), (-1, 0), (1, 0), (0, 1))


@pytest.fixture(scope="module")
def town() -> TownMap:
    return load_town_map(DEFAULT_TOWN)


def objects_in(town: TownMap, place: str, kind: str | None = None) -> list:
    return [o for o in town.objects if o.place == place and (kind is None or o.type == kind)]


def neighbours(x: int, y: int, town: TownMap):
    for dx, dy in STEPS:
        if 0 <= x + dx < town.width and 0 <= y + dy < town.height:
            yield x + dx, y + dy


def reachable_from(town: TownMap, start: tuple[int, int]) -> set[tuple[int, int]]:
    seen = {start}
    todo = deque([start])
    while todo:
        for n in neighbours(*todo.popleft(), town):
            if n not in seen and town.walkable[n[1], n[0]]:
                seen.add(n)
                todo.append(n)
    return seen


# --- the shipped default town ---------------------------------------------------------------------------


def test_default_town_is_48_by_48(town: TownMap) -> None:
    """The default map loads as a 48x48 grid with arrays of the documented dtypes and shapes."""
    assert (town.name, town.width, town.height) == ("default", 48, 48)
    assert town.tiles.shape == town.place_index.shape == (48, 48)
    assert town.tiles.dtype == np.uint8 and town.place_index.dtype == np.int16
    assert town.walkable.dtype == bool and town.outdoors.dtype == bool


def test_default_town_has_homes_for_eight_agents(town: TownMap) -> None:
    """Eight homes, home_0..home_7, each with exactly one bed, shower, fridge, stove and wardrobe."""
    homes = [p for p in town.places if p.kind == "home"]
    assert [p.id for p in homes] == [f"home_{i}" for i in range(8)]
    for home in homes:
        counts = Counter(o.type for o in objects_in(town, home.id))
        assert counts == Counter(HOME_OBJECTS), home.id


def test_every_home_door_opens_onto_a_road(town: TownMap) -> None:
    """Each home has one door, and it touches a road tile."""
    for home in (p for p in town.places if p.kind == "home"):
        assert len(home.doors) == 1, home.id
        assert any(town.tiles[y, x] == TileKind.ROAD for x, y in neighbours(*home.doors[0], town)), home.id


def test_every_door_of_every_place_touches_a_road(town: TownMap) -> None:
    """Roads connect every door in the default town."""
    doors = [(p.id, d) for p in town.places for d in p.doors]
    assert doors
    for pid, door in doors:
        assert any(town.tiles[y, x] == TileKind.ROAD for x, y in neighbours(*door, town)), (pid, door)


def test_default_town_has_one_of_each_public_place(town: TownMap) -> None:
    """Grocer, cafe, office, park and gym each appear exactly once; every place kind is used."""
    kinds = Counter(p.kind for p in town.places)
    assert kinds == {"home": 8, "grocer": 1, "cafe": 1, "office": 1, "park": 1, "gym": 1}
    assert set(kinds) == set(PLACE_KINDS)


def test_grocer_has_shelves_a_queued_till_and_a_stock_room_desk(town: TownMap) -> None:
    """The grocer has at least 3 shelves, one till with a queue of at least 4 nodes, and one desk."""
    assert len(objects_in(town, "grocer", "shelf")) >= 3
    (till,) = objects_in(town, "grocer", "till")
    assert len(till.queue) >= 4
    assert len(objects_in(town, "grocer", "desk")) == 1


def test_cafe_has_a_queued_counter_tables_and_a_kitchen_desk(town: TownMap) -> None:
    """The cafe has one counter_service with a queue of at least 4 nodes, at least 6 tables and one desk."""
    (counter,) = objects_in(town, "cafe", "counter_service")
    assert len(counter.queue) >= 4
    assert len(objects_in(town, "cafe", "table")) >= 6
    assert len(objects_in(town, "cafe", "desk")) == 1


def test_office_has_six_desks_and_park_has_benches_on_grass(town: TownMap) -> None:
    """The office has exactly 6 desks; the park has at least 6 benches and is otherwise grass."""
    assert len(objects_in(town, "office", "desk")) == 6
    assert len(objects_in(town, "park", "bench")) >= 6
    (park,) = (p for p in town.places if p.kind == "park")
    x, y, w, h = park.rect
    area = town.tiles[y : y + h, x : x + w]
    assert set(np.unique(area)) <= {TileKind.GRASS, TileKind.OBJECT}


def test_gym_showers_have_separate_queues_and_access(town: TownMap) -> None:
    """Each gym shower has its own access tiles and a queue of at least 3 nodes; home showers have none."""
    showers = objects_in(town, "gym", "shower")
    assert len(showers) == 2
    assert not set(showers[0].access) & set(showers[1].access)
    assert showers[0].queue != showers[1].queue
    assert all(len(s.queue) >= 3 for s in showers)
    assert all(not o.queue for o in town.objects if o.type == "shower" and o.place.startswith("home"))


def test_object_access_tiles_are_walkable_neighbours(town: TownMap) -> None:
    """Each object is on an OBJECT tile inside its place, used from walkable non-queue non-door neighbours."""
    places = {p.id: i for i, p in enumerate(town.places)}
    assert {o.type for o in town.objects} <= set(OBJECT_TYPES)
    for o in town.objects:
        assert town.tiles[o.y, o.x] == TileKind.OBJECT and not town.walkable[o.y, o.x]
        assert town.place_index[o.y, o.x] == places[o.place]
        assert o.access, o.id
        for x, y in o.access:
            assert abs(x - o.x) + abs(y - o.y) == 1
            assert town.walkable[y, x] and town.tiles[y, x] not in (TileKind.QUEUE, TileKind.DOOR), o.id


def test_object_ids_count_each_type_within_its_place(town: TownMap) -> None:
    """Object ids are place.type.n with n counting from 0 per type and place, and are unique."""
    assert len({o.id for o in town.objects}) == len(town.objects)
    seen: Counter[tuple[str, str]] = Counter()
    for o in town.objects:
        assert o.id == f"{o.place}.{o.type}.{seen[(o.place, o.type)]}"
        seen[(o.place, o.type)] += 1


def test_queue_nodes_ordered_nearest_first(town: TownMap) -> None:
    """Each queue starts next to a use tile of its object and every later node is one step further on."""
    queued = [o for o in town.objects if o.queue]
    assert {o.type for o in queued} == {"till", "counter_service", "shower"}
    for o in queued:
        first = o.queue[0]
        assert any(abs(first[0] - a) + abs(first[1] - b) == 1 for a, b in o.access), o.id
        for (x0, y0), (x1, y1) in zip(o.queue, o.queue[1:], strict=False):
            assert abs(x1 - x0) + abs(y1 - y0) == 1, o.id
        assert all(town.tiles[y, x] == TileKind.QUEUE for x, y in o.queue)
    queue_tiles = {(int(x), int(y)) for y, x in np.argwhere(town.tiles == TileKind.QUEUE)}
    assert set().union(*(o.queue for o in queued)) == queue_tiles, "every queue node belongs to a queue"


def test_every_walkable_tile_reachable_from_every_spawn(town: TownMap) -> None:
    """Flooding from each spawn tile reaches every walkable tile of the default town."""
    walkable = {(int(x), int(y)) for y, x in np.argwhere(town.walkable)}
    assert town.spawn_tiles
    for spawn in town.spawn_tiles:
        assert town.tiles[spawn[1], spawn[0]] == TileKind.ROAD
        assert reachable_from(town, spawn) == walkable


def test_building_walls_have_gaps_only_at_doors(town: TownMap) -> None:
    """Every walled place's outline is wall or door, and its doors are on that outline."""
    for p in town.places:
        if p.kind == "park":
            continue
        x, y, w, h = p.rect
        outline = {(x + i, y) for i in range(w)} | {(x + i, y + h - 1) for i in range(w)}
        outline |= {(x, y + j) for j in range(h)} | {(x + w - 1, y + j) for j in range(h)}
        assert {town.tiles[ty, tx] for tx, ty in outline} <= {TileKind.WALL, TileKind.DOOR}, p.id
        assert set(p.doors) <= outline, p.id


def test_place_index_matches_place_rects(town: TownMap) -> None:
    """place_index holds each place's index over exactly its rect and -1 everywhere else."""
    expected = np.full((town.height, town.width), -1)
    for i, p in enumerate(town.places):
        x, y, w, h = p.rect
        expected[y : y + h, x : x + w] = i
    assert np.array_equal(town.place_index, expected)


def test_outdoors_is_road_and_grass(town: TownMap) -> None:
    """The outdoors mask is exactly the road and grass tiles, and all of it is walkable."""
    assert np.array_equal(town.outdoors, np.isin(town.tiles, (TileKind.ROAD, TileKind.GRASS)))
    assert not (town.outdoors & ~town.walkable).any()


def test_map_arrays_are_read_only_and_loads_compare_equal(town: TownMap) -> None:
    """A loaded map cannot be edited in place, and loading the file twice gives equal maps."""
    with pytest.raises(ValueError):
        town.tiles[0, 0] = TileKind.ROAD
    with pytest.raises(ValueError):
        town.walkable[0, 0] = True
    again = load_town_map(str(DEFAULT_TOWN))
    assert again == town and hash(again) == hash(town)


def test_shipped_yaml_matches_its_generator() -> None:
    """town.yaml is exactly what tools/make_town.py writes, so the two cannot drift apart."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_town.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- tiling ---------------------------------------------------------------------------------------------


def test_tiling_k4_gives_192_square_with_16x_objects_and_unique_ids(town: TownMap) -> None:
    """Tiling 4x4 makes a 192x192 town with 16 times the places, objects and spawns, all ids unique."""
    big = tile_town_map(town, 4)
    assert (big.width, big.height) == (192, 192) and big.tiles.shape == (192, 192)
    assert len(big.objects) == 16 * len(town.objects) and len(big.places) == 16 * len(town.places)
    assert len(big.spawn_tiles) == 16 * len(town.spawn_tiles)
    assert len({o.id for o in big.objects}) == len(big.objects)
    assert len({p.id for p in big.places}) == len(big.places)
    assert big.places[: len(town.places)] == town.places and big.objects[: len(town.objects)] == town.objects


def test_tiled_ids_coordinates_and_place_index_follow_their_block(town: TownMap) -> None:
    """In block (bx, by) places are id@bx,by, objects are shifted by the block, and place_index agrees."""
    big = tile_town_map(town, 3)
    index = {p.id: i for i, p in enumerate(big.places)}
    till = next(o for o in big.objects if o.id == "grocer@2,1.till.0")
    base = next(o for o in town.objects if o.id == "grocer.till.0")
    assert (till.x, till.y, till.place) == (base.x + 96, base.y + 48, "grocer@2,1")
    assert till.queue == tuple((x + 96, y + 48) for x, y in base.queue)
    for o in big.objects:
        assert big.place_index[o.y, o.x] == index[o.place]
        assert big.tiles[o.y, o.x] == TileKind.OBJECT
    assert big.place_index.max() == len(big.places) - 1


def test_tiled_town_is_one_connected_town(town: TownMap) -> None:
    """Roads meet across block seams, so every walkable tile of a 2x2 town is reachable from one spawn."""
    big = tile_town_map(town, 2)
    walkable = {(int(x), int(y)) for y, x in np.argwhere(big.walkable)}
    assert reachable_from(big, big.spawn_tiles[0]) == walkable


def test_tiling_k1_returns_an_equal_map_and_rejects_bad_k(town: TownMap) -> None:
    """k=1 gives a map equal to the original; k below 1 or not an int is refused."""
    assert tile_town_map(town, 1) == town
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError):
            tile_town_map(town, bad)  # type: ignore[arg-type]


# --- a small custom town and its error messages ----------------------------------------------------------


def small_town() -> dict:
    """A 10x5 town: one walled home with a bed and a fridge, a park with a bench, a road along the bottom."""
    return {
        "name": "tiny",
        "width": 10,
        "height": 5,
        "legend": {
            ",": {"tile": "grass"},
            "#": {"tile": "wall"},
            ".": {"tile": "floor"},
            "+": {"tile": "door"},
            "=": {"tile": "road"},
            "q": {"tile": "queue"},
            "B": {"object": "bed"},
            "F": {"object": "fridge"},
            "N": {"object": "bench"},
        },
        "layout": ",,,,,,,,,,\n,#####,,,,\n,#B.F#,N,,\n,##+##,,,,\n==========\n",
        "places": {"home_0": {"kind": "home", "rect": [1, 1, 5, 3]}, "park": {"kind": "park", "rect": [6, 0, 4, 4]}},
        "spawn_tiles": [[0, 4]],
    }


def write(tmp_path: Path, data: dict | str, name: str = "bad_town.yaml") -> Path:
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def set_row(data: dict, y: int, row: str) -> dict:
    rows = data["layout"].rstrip("\n").split("\n")
    rows[y] = row
    data["layout"] = "\n".join(rows) + "\n"
    return data


def test_small_custom_town_loads(tmp_path: Path) -> None:
    """The small test town is valid: its objects, doors and open park come out as expected."""
    town = load_town_map(write(tmp_path, small_town(), "tiny.yaml"))
    assert [o.id for o in town.objects] == ["home_0.bed.0", "home_0.fridge.0", "park.bench.0"]
    assert town.places[0].doors == ((3, 3),) and town.places[1].doors == ()
    bed = town.objects[0]
    assert bed.access == ((3, 2),) and bed.queue == ()


def test_queue_order_follows_the_chain_not_the_rows(tmp_path: Path) -> None:
    """A queue that bends is ordered by steps from the till's use tile, not by row-major position."""
    data = small_town()
    data.update(width=8, height=8, spawn_tiles=[[0, 0]], places={"grocer": {"kind": "grocer", "rect": [0, 1, 8, 7]}})
    data["legend"].update({"_": {"tile": "counter"}, "T": {"object": "till"}})
    data["layout"] = "\n".join(
        ["========", "###+####", "#......#", "#...qq.#", "#...q..#", "#...q..#", "#__T___#", "########"]
    )
    town = load_town_map(write(tmp_path, data, "shop.yaml"))
    (till,) = town.objects
    assert till.access == ((3, 5),)
    assert till.queue == ((4, 5), (4, 4), (4, 3), (5, 3))


def _edit(fn):
    def build() -> dict:
        data = small_town()
        fn(data)
        return data

    return build


BAD_FILES = {
    "unknown glyph": (_edit(lambda d: set_row(d, 2, ",#B.F#,Z,,")), "layout", "row 2 col 7: unknown glyph 'Z'"),
    "ragged row": (_edit(lambda d: set_row(d, 3, ",##+##,,,")), "layout", "row 3: expected 10 glyphs"),
    "too few rows": (_edit(lambda d: d.update(height=6)), "layout", "expected 6 rows"),
    "place out of bounds": (
        _edit(lambda d: d["places"]["park"].update(rect=[6, 0, 5, 4])),
        "places.park.rect",
        "is not inside",
    ),
    "unknown top-level key": (_edit(lambda d: d.update(colour="red")), "colour", "unknown key"),
    "unknown place key": (_edit(lambda d: d["places"]["home_0"].update(size=3)), "places.home_0.size", "unknown key"),
    "missing key": (_edit(lambda d: d.pop("spawn_tiles")), "spawn_tiles", "required key is missing"),
    "bad place kind": (
        _edit(lambda d: d["places"]["home_0"].update(kind="castle")),
        "places.home_0.kind",
        "unknown kind 'castle'",
    ),
    "overlapping places": (
        _edit(lambda d: d["places"]["park"].update(rect=[5, 0, 5, 4])),
        "places.park.rect",
        "overlaps place 'home_0'",
    ),
    "bad legend tile": (
        _edit(lambda d: d["legend"].update({"Z": {"tile": "lava"}})),
        "legend.'Z'.tile",
        "unknown tile 'lava'",
    ),
    "bad legend key": (_edit(lambda d: d["legend"].update({"Z": {"thing": "bed"}})), "legend.'Z'.thing", "unknown key"),
    "object outside every place": (
        _edit(lambda d: set_row(d, 0, "N,,,,,,,,,")),
        "layout",
        "row 0 col 0: bench is not inside any place",
    ),
    "object with no access": (
        _edit(lambda d: set_row(d, 2, ",#B#F#,N,,")),
        "layout",
        "row 2 col 2: bed has no walkable neighbour",
    ),
    "unreachable place": (_edit(lambda d: set_row(d, 3, ",#####,,,,")), "places.home_0", "cannot be reached"),
    "queue leading nowhere": (
        _edit(lambda d: set_row(d, 0, "q,,,,,,,,,")),
        "layout",
        "row 0 col 0: queue node does not lead",
    ),
    "spawn not on a road": (
        _edit(lambda d: d.update(spawn_tiles=[[0, 4], [0, 0]])),
        "spawn_tiles[1]",
        "must be a road tile, but is grass",
    ),
    "spawn off the map": (_edit(lambda d: d.update(spawn_tiles=[[10, 4]])), "spawn_tiles[0]", "off the map"),
    "no spawn tiles": (_edit(lambda d: d.update(spawn_tiles=[])), "spawn_tiles", "non-empty list"),
    "bad width": (_edit(lambda d: d.update(width="10")), "width", "whole number"),
    "bad place id": (
        _edit(lambda d: d["places"].update({"home@1": {"kind": "home", "rect": [0, 0, 1, 1]}})),
        "places.home@1",
        "letters, digits",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_map_file_raises_config_error_naming_file_and_field(tmp_path: Path, case: str) -> None:
    """Each kind of broken map file raises ConfigError naming the file, the field and the fault."""
    build, field, fragment = BAD_FILES[case]
    path = write(tmp_path, build())
    with pytest.raises(ConfigError) as info:
        load_town_map(path)
    err = info.value
    assert err.file == str(path) and err.field == field, str(err)
    assert str(err).startswith(f"{path}: {field}: ") and fragment in err.message, str(err)


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("name: tiny\nwidth: [10\n", "line 3 col 1", "YAML syntax error"),
        ("name: tiny\nname: again\n", "line 2 col 1", "duplicate key 'name'"),
        ("- just\n- a list\n", "", "expected a mapping"),
    ],
)
def test_unparseable_map_file_raises_config_error_with_line(
    tmp_path: Path, text: str, field: str, fragment: str
) -> None:
    """YAML syntax errors, repeated keys and a non-mapping document raise ConfigError naming file and line."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_town_map(path)
    assert info.value.file == str(path) and info.value.field == field and fragment in info.value.message


def test_missing_map_file_raises_config_error(tmp_path: Path) -> None:
    """A map path that does not exist raises ConfigError naming it, not FileNotFoundError."""
    with pytest.raises(ConfigError, match="nowhere.yaml: cannot read file"):
        load_town_map(tmp_path / "nowhere.yaml")


def test_parse_town_map_names_the_given_source() -> None:
    """parse_town_map reports problems against the source name it is given."""
    data = small_town()
    data["legend"]["B"] = {"object": "throne"}
    with pytest.raises(ConfigError, match=r"^memory\.yaml: legend\.'B'\.object: unknown object 'throne'"):
        parse_town_map(data, "memory.yaml")

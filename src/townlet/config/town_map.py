"""Town map files: the tile/place/object model, the YAML loader that validates it, and k×k tiling.

Coordinates are ``(x, y)`` = (column, row) from the top left; arrays are indexed ``[y, x]``. Layout rows
and columns in error messages count from 0, like the coordinates. See ``defaults/town.yaml`` for the format.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import ndimage

from townlet.config.errors import ConfigError


class TileKind(IntEnum):
    """What one map tile is; the uint8 codes stored in :attr:`TownMap.tiles`."""

    FLOOR = 0
    WALL = 1
    DOOR = 2
    ROAD = 3
    COUNTER = 4
    QUEUE = 5
    GRASS = 6
    OBJECT = 7


OUTDOOR_KINDS = (TileKind.ROAD, TileKind.GRASS)
# one character per tile kind: the viewer's map rows (GET /api/town) and the text render
TILE_CHARS = {
    TileKind.FLOOR: ".",
    TileKind.WALL: "#",
    TileKind.DOOR: "+",
    TileKind.ROAD: "=",
    TileKind.COUNTER: "_",
    TileKind.QUEUE: "q",
    TileKind.GRASS: ",",
    TileKind.OBJECT: "o",
}
OBJECT_TYPES = (
    "bed",
    "fridge",
    "stove",
    "shower",
    "wardrobe",
    "till",
    "desk",
    "shelf",
    "bench",
    "table",
    "counter_service",
)
PLACE_KINDS = ("home", "grocer", "cafe", "office", "park", "gym")

Tile = tuple[int, int]
_WALKABLE = (TileKind.FLOOR, TileKind.DOOR, TileKind.ROAD, TileKind.QUEUE, TileKind.GRASS)
_TOP_KEYS = ("name", "width", "height", "legend", "layout", "places", "spawn_tiles")
_ID = re.compile(r"[A-Za-z0-9_]+\Z")  # '.' and '@' are reserved for object ids and tiled place ids
_STEPS = ((0, -1), (-1, 0), (1, 0), (0, 1))  # the 4 neighbours in row-major order


@dataclass(frozen=True, slots=True)
class Place:
    """A named area of the town: a home, a shop, the park..."""

    id: str  # unique, e.g. "home_3" ("home_3@1,0" in a tiled town)
    kind: str  # one of PLACE_KINDS
    rect: tuple[int, int, int, int]  # x, y, w, h (walls included)
    doors: tuple[Tile, ...]  # door tiles on/inside the rect, row-major; () for open places (the park)


@dataclass(frozen=True, slots=True)
class MapObject:
    """One usable object: its own (unwalkable) tile, the tiles it is used from, and its queue."""

    id: str  # f"{place}.{type}.{n}", n counting that type within the place in row-major order
    type: str  # one of OBJECT_TYPES
    x: int
    y: int
    place: str  # id of the place whose rect contains it
    access: tuple[Tile, ...]  # walkable non-queue, non-door 4-neighbours it is used from; never empty
    queue: tuple[Tile, ...]  # queue-node tiles leading to it, nearest first; () if none


@dataclass(frozen=True)
class TownMap:
    """A loaded, validated town. Its arrays are read-only; equality compares their contents."""

    name: str
    width: int
    height: int
    tiles: np.ndarray  # uint8 [height, width] of TileKind values
    place_index: np.ndarray  # int16 [height, width]: index into places, -1 outside every place
    places: tuple[Place, ...]  # in file order (block by block in a tiled town)
    objects: tuple[MapObject, ...]  # in row-major order (block by block in a tiled town)
    spawn_tiles: tuple[Tile, ...]  # road tiles where newcomers arrive

    def __post_init__(self) -> None:
        self.tiles.setflags(write=False)
        self.place_index.setflags(write=False)

    def _key(self) -> tuple[Any, ...]:
        return (self.name, self.width, self.height, self.places, self.objects, self.spawn_tiles)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TownMap):
            return NotImplemented
        return (
            self._key() == other._key()
            and np.array_equal(self.tiles, other.tiles)
            and np.array_equal(self.place_index, other.place_index)
        )

    def __hash__(self) -> int:
        return hash(self._key())

    @cached_property
    def walkable(self) -> np.ndarray:
        """Read-only bool ``[height, width]``: floor, door, road, queue and grass tiles."""
        return _frozen(np.isin(self.tiles, _WALKABLE))

    @cached_property
    def outdoors(self) -> np.ndarray:
        """Read-only bool ``[height, width]``: road and grass tiles."""
        return _frozen(np.isin(self.tiles, OUTDOOR_KINDS))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects repeated mapping keys (a repeated place id would silently win)."""


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: list[Any] = []
    for key_node, _ in node.value:
        if (key := loader.construct_object(key_node)) in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.append(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def load_town_map(path: str | Path) -> TownMap:
    """Read and validate a town map YAML file into a :class:`TownMap`.

    Args:
        path: The map file.

    Raises:
        ConfigError: On any problem, naming the file and the field (or the line, for YAML syntax errors).
    """
    src = str(path)
    try:
        data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_StrictLoader)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(src, "", f"cannot read file ({getattr(exc, 'strerror', None) or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} col {mark.column + 1}" if mark else ""
        raise ConfigError(src, where, f"YAML syntax error: {getattr(exc, 'problem', None) or exc}") from None
    return parse_town_map(data, src)


def _keys(entry: dict[Any, Any], allowed: tuple[str, ...], prefix: str, src: str) -> None:
    for key in entry:
        if key not in allowed:
            raise ConfigError(src, f"{prefix}{key}", f"unknown key (expected one of: {', '.join(allowed)})")
    for key in allowed:
        if key not in entry:
            raise ConfigError(src, f"{prefix}{key}", "required key is missing")


def _ints(value: Any, n: int, src: str, field: str, what: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or len(value) != n
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(src, field, f"expected {what}, got {value!r}")
    return tuple(value)


def _legend(raw: Any, src: str) -> dict[str, tuple[TileKind, str | None]]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(src, "legend", "expected a mapping of glyph -> {tile: KIND} or {object: TYPE}")
    kinds = tuple(k.name.lower() for k in TileKind if k is not TileKind.OBJECT)
    out: dict[str, tuple[TileKind, str | None]] = {}
    for glyph, entry in raw.items():
        field = f"legend.{glyph!r}"
        if not isinstance(glyph, str) or len(glyph) != 1 or glyph.isspace():
            raise ConfigError(src, field, "a glyph is exactly one non-space character (quote it)")
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(src, field, f"expected {{tile: KIND}} or {{object: TYPE}}, got {entry!r}")
        ((key, value),) = entry.items()
        allowed = {"tile": kinds, "object": OBJECT_TYPES}.get(key)
        if allowed is None:
            raise ConfigError(src, f"{field}.{key}", "unknown key (expected 'tile' or 'object')")
        if value not in allowed:
            raise ConfigError(src, f"{field}.{key}", f"unknown {key} {value!r} (one of: {', '.join(allowed)})")
        out[glyph] = (TileKind[value.upper()], None) if key == "tile" else (TileKind.OBJECT, value)
    return out


def _layout(
    raw: Any, width: int, height: int, glyphs: dict[str, tuple[TileKind, str | None]], src: str
) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    if not isinstance(raw, str):
        raise ConfigError(src, "layout", "expected a block of text rows (write `layout: |`)")
    rows = raw.rstrip("\n").split("\n")
    if len(rows) != height:
        raise ConfigError(src, "layout", f"expected {height} rows (the height), got {len(rows)}")
    tiles = np.zeros((height, width), np.uint8)
    cells: list[tuple[int, int, str]] = []  # (x, y, object type), row-major
    for y, row in enumerate(rows):
        if len(row) != width:
            raise ConfigError(src, "layout", f"row {y}: expected {width} glyphs (the width), got {len(row)}")
        for x, glyph in enumerate(row):
            if glyph not in glyphs:
                raise ConfigError(src, "layout", f"row {y} col {x}: unknown glyph {glyph!r} (not in legend)")
            tiles[y, x], obj = glyphs[glyph]
            if obj:
                cells.append((x, y, obj))
    return tiles, cells


def _places(raw: Any, tiles: np.ndarray, src: str) -> tuple[list[Place], np.ndarray]:
    if not isinstance(raw, dict):
        raise ConfigError(src, "places", "expected a mapping of place id -> {kind: KIND, rect: [x, y, w, h]}")
    height, width = tiles.shape
    index = np.full((height, width), -1, np.int16)
    places: list[Place] = []
    for pid, entry in raw.items():
        field = f"places.{pid}"
        if not isinstance(pid, str) or not _ID.match(pid):
            raise ConfigError(src, field, "a place id is letters, digits and '_' only")
        if not isinstance(entry, dict):
            raise ConfigError(src, field, "expected {kind: KIND, rect: [x, y, w, h]}")
        _keys(entry, ("kind", "rect"), field + ".", src)
        if entry["kind"] not in PLACE_KINDS:
            raise ConfigError(
                src, field + ".kind", f"unknown kind {entry['kind']!r} (one of: {', '.join(PLACE_KINDS)})"
            )
        x, y, w, h = _ints(entry["rect"], 4, src, field + ".rect", "[x, y, w, h]")
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > width or y + h > height:
            raise ConfigError(src, field + ".rect", f"[{x}, {y}, {w}, {h}] is not inside the {width}x{height} map")
        region = index[y : y + h, x : x + w]
        if (region >= 0).any():
            raise ConfigError(src, field + ".rect", f"overlaps place {places[region.max()].id!r}")
        region[...] = len(places)
        door_cells = np.argwhere(tiles[y : y + h, x : x + w] == TileKind.DOOR)
        doors = tuple((int(c) + x, int(r) + y) for r, c in door_cells)
        places.append(Place(pid, entry["kind"], (x, y, w, h), doors))
    return places, index


def parse_town_map(data: Any, source: str) -> TownMap:
    """Validate already-parsed map data (the YAML document as plain Python data) into a :class:`TownMap`.

    Args:
        data: The parsed document.
        source: The file name, used in error messages.

    Raises:
        ConfigError: On any problem, naming ``source`` and the field.
    """
    src = source
    if not isinstance(data, dict):
        raise ConfigError(src, "", "expected a mapping with keys: " + ", ".join(_TOP_KEYS))
    _keys(data, _TOP_KEYS, "", src)
    if not isinstance(data["name"], str) or not data["name"]:
        raise ConfigError(src, "name", f"expected a non-empty string, got {data['name']!r}")
    for key in ("width", "height"):
        if not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1:
            raise ConfigError(src, key, f"expected a whole number of at least 1, got {data[key]!r}")
    tiles, cells = _layout(data["layout"], data["width"], data["height"], _legend(data["legend"], src), src)
    places, place_index = _places(data["places"], tiles, src)
    height, width = tiles.shape
    walk = np.isin(tiles, _WALKABLE)
    free = walk & ~np.isin(tiles, (TileKind.QUEUE, TileKind.DOOR))
    found: list[dict[str, Any]] = []
    counts: Counter[tuple[int, str]] = Counter()
    for x, y, typ in cells:
        if (pi := int(place_index[y, x])) < 0:
            raise ConfigError(src, "layout", f"row {y} col {x}: {typ} is not inside any place")
        access = tuple(
            (x + dx, y + dy)
            for dx, dy in _STEPS
            if 0 <= x + dx < width and 0 <= y + dy < height and free[y + dy, x + dx]
        )
        if not access:
            raise ConfigError(
                src,
                "layout",
                f"row {y} col {x}: {typ} has no walkable neighbour to be used from (queue and door tiles do not count)",
            )
        found.append(
            dict(
                id=f"{places[pi].id}.{typ}.{counts[(pi, typ)]}",
                type=typ,
                x=x,
                y=y,
                place=places[pi].id,
                access=access,
                queue=(),
            )
        )
        counts[(pi, typ)] += 1
    _assign_queues(found, places, tiles, src)
    raw = data["spawn_tiles"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(src, "spawn_tiles", "expected a non-empty list of [x, y] road tiles")
    spawns: list[Tile] = []
    for i, item in enumerate(raw):
        x, y = _ints(item, 2, src, f"spawn_tiles[{i}]", "[x, y]")
        on_map = 0 <= x < width and 0 <= y < height
        if not on_map or tiles[y, x] != TileKind.ROAD:
            what = TileKind(tiles[y, x]).name.lower() if on_map else "off the map"
            raise ConfigError(src, f"spawn_tiles[{i}]", f"[{x}, {y}] must be a road tile, but is {what}")
        spawns.append((x, y))
    _check_reachable(walk, places, found, spawns, src)
    return TownMap(
        data["name"],
        width,
        height,
        tiles,
        place_index,
        tuple(places),
        tuple(MapObject(**o) for o in found),
        tuple(spawns),
    )


def _assign_queues(found: list[dict[str, Any]], places: list[Place], tiles: np.ndarray, src: str) -> None:
    """Give each chain of queue tiles to the nearest queueable object(s) whose use tile it touches."""
    gyms = {p.id for p in places if p.kind == "gym"}
    queueable = [
        o for o in found if o["type"] in ("till", "counter_service") or (o["type"] == "shower" and o["place"] in gyms)
    ]
    is_queue = tiles == TileKind.QUEUE
    labels, n = ndimage.label(is_queue)
    for label in range(1, n + 1):
        chain = [(int(c), int(r)) for r, c in np.argwhere(labels == label)]
        heads = {
            o["id"]: [(x, y) for x, y in chain if any(abs(x - a) + abs(y - b) == 1 for a, b in o["access"])]
            for o in queueable
        }
        near = {o["id"]: min(abs(o["x"] - x) + abs(o["y"] - y) for x, y in chain) for o in queueable if heads[o["id"]]}
        if not near:
            raise ConfigError(
                src,
                "layout",
                f"row {chain[0][1]} col {chain[0][0]}: queue node does not lead"
                " to the use tile of a till, counter_service or gym shower",
            )
        for o in queueable:
            if near.get(o["id"]) == min(near.values()):  # ties share the chain (the gym's two showers)
                dist = _flood(heads[o["id"]], is_queue)
                o["queue"] = tuple(sorted(dist, key=lambda t: (dist[t], t[1], t[0])))


def _flood(start: list[Tile], allowed: np.ndarray) -> dict[Tile, int]:
    """Breadth-first step counts over ``allowed`` tiles from ``start`` (all at 0)."""
    dist = dict.fromkeys(start, 0)
    todo = deque(start)
    while todo:
        x, y = todo.popleft()
        for t in ((x + dx, y + dy) for dx, dy in _STEPS):
            if 0 <= t[0] < allowed.shape[1] and 0 <= t[1] < allowed.shape[0] and allowed[t[1], t[0]] and t not in dist:
                dist[t] = dist[(x, y)] + 1
                todo.append(t)
    return dist


def _check_reachable(
    walk: np.ndarray, places: list[Place], found: list[dict[str, Any]], spawns: list[Tile], src: str
) -> None:
    """Every place (all its doors), spawn tile and object must be in one walkable component."""
    labels, _ = ndimage.label(walk)
    entries = []  # per place: its doors, or every walkable tile of a door-less place
    for p in places:
        x0, y0, w, h = p.rect
        inside = np.argwhere(walk[y0 : y0 + h, x0 : x0 + w])
        entries.append(list(p.doors) or [(x0 + int(c), y0 + int(r)) for r, c in inside])
        if not entries[-1]:
            raise ConfigError(src, f"places.{p.id}", "has no door and no walkable tile, so cannot be entered")
    votes = Counter(int(labels[e[0][1], e[0][0]]) for e in entries)
    first_spawn = int(labels[spawns[0][1], spawns[0][0]])  # breaks ties between equally popular components
    main = max(votes, key=lambda label: (votes[label], label == first_spawn)) if votes else first_spawn
    anchor = next((p.id for p, e in zip(places, entries, strict=True) if labels[e[0][1], e[0][0]] == main), "")
    for p, entry in zip(places, entries, strict=True):
        cut = [t for t in entry if labels[t[1], t[0]] != main]
        if cut and (p.doors or len(cut) == len(entry)):
            raise ConfigError(
                src,
                f"places.{p.id}",
                f"cannot be reached from place {anchor!r} over walkable tiles (no path to tile {list(cut[0])})",
            )
    for i, (x, y) in enumerate(spawns):
        if labels[y, x] != main:
            raise ConfigError(src, f"spawn_tiles[{i}]", f"[{x}, {y}] is not connected to the places")
    for o in found:
        if not any(labels[y, x] == main for x, y in o["access"]):
            raise ConfigError(
                src,
                "layout",
                f"row {o['y']} col {o['x']}: {o['id']} cannot be reached from the places over walkable tiles",
            )


def tile_town_map(town: TownMap, k: int) -> TownMap:
    """Lay ``k``×``k`` copies of a town side by side into one ``(k*W)``×``(k*H)`` town.

    Blocks go in row-major order, block (0, 0) first, so its places and objects keep their plain ids and
    indices; block (bx, by)'s place ids become ``f"{id}@{bx},{by}"`` and its object ids follow their place.
    Spawn tiles come from every block. The result is named ``f"{town.name}x{k}"``; ``k == 1`` returns
    ``town`` itself.

    Args:
        town: The town to copy.
        k: Copies along each side, at least 1.

    Raises:
        ValueError: If ``k`` is not a positive integer or the places would overflow the int16 place index.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k == 1:
        return town
    n, w, h = len(town.places), town.width, town.height
    if n * k * k > np.iinfo(np.int16).max:
        raise ValueError(f"{n * k * k} places do not fit the int16 place index")
    index = np.full((h * k, w * k), -1, np.int16)
    places: list[Place] = []
    objects: list[MapObject] = []
    spawns: list[Tile] = []
    for by in range(k):
        for bx in range(k):
            dx, dy, block = bx * w, by * h, by * k + bx
            tag = f"@{bx},{by}" if block else ""

            def shift(ts: tuple[Tile, ...], dx: int = dx, dy: int = dy) -> tuple[Tile, ...]:
                return tuple((x + dx, y + dy) for x, y in ts)

            index[dy : dy + h, dx : dx + w] = np.where(town.place_index >= 0, town.place_index + block * n, -1)
            places += [
                Place(p.id + tag, p.kind, (p.rect[0] + dx, p.rect[1] + dy, p.rect[2], p.rect[3]), shift(p.doors))
                for p in town.places
            ]
            objects += [
                MapObject(
                    o.place + tag + o.id[len(o.place) :],
                    o.type,
                    o.x + dx,
                    o.y + dy,
                    o.place + tag,
                    shift(o.access),
                    shift(o.queue),
                )
                for o in town.objects
            ]
            spawns += shift(town.spawn_tiles)
    return TownMap(
        f"{town.name}x{k}",
        w * k,
        h * k,
        np.tile(town.tiles, (k, k)),
        index,
        tuple(places),
        tuple(objects),
        tuple(spawns),
    )

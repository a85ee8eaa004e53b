"""Frames of the town for humans: an RGB image (tiles, objects, agents) and a text frame with a status block."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from townlet.config.models import NEED_NAMES
from townlet.config.town_map import TILE_CHARS, TileKind
from townlet.policy.options import OPTION_LABELS

if TYPE_CHECKING:
    from townlet.world.state import World

TILE_RGB = {
    TileKind.FLOOR: (222, 214, 196),
    TileKind.WALL: (64, 60, 58),
    TileKind.DOOR: (150, 104, 60),
    TileKind.ROAD: (150, 150, 156),
    TileKind.COUNTER: (190, 160, 110),
    TileKind.QUEUE: (176, 200, 226),
    TileKind.GRASS: (120, 180, 96),
    TileKind.OBJECT: (222, 214, 196),
}
OBJECT_RGB = {
    "bed": (70, 110, 200),
    "fridge": (230, 240, 250),
    "stove": (200, 70, 50),
    "shower": (80, 200, 220),
    "wardrobe": (120, 80, 40),
    "till": (240, 200, 40),
    "desk": (100, 70, 140),
    "shelf": (170, 120, 70),
    "bench": (90, 60, 30),
    "table": (210, 150, 90),
    "counter_service": (240, 140, 40),
}
OBJECT_CHAR = {
    "bed": "B",
    "fridge": "F",
    "stove": "S",
    "shower": "W",
    "wardrobe": "R",
    "till": "T",
    "desk": "D",
    "shelf": "H",
    "bench": "N",
    "table": "A",
    "counter_service": "C",
}
AGENT_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"


def agent_colour(slot: int) -> tuple[int, int, int]:
    """A stable, well-spread colour per slot (golden-ratio hues)."""
    hue = (slot * 0.618033988749895) % 1.0
    i = int(hue * 6)
    f = hue * 6 - i
    q, t = int(230 * (1 - f)), int(230 * f)
    return [(230, t, 20), (q, 230, 20), (20, 230, t), (20, q, 230), (t, 20, 230), (230, 20, q)][i % 6]


def rgb_frame(world: World, tile_px: int = 8) -> np.ndarray:
    """``uint8[H * px, W * px, 3]``: tiles, objects (filled tiles) and agents (inset squares with a dark rim)."""
    g, o, a = world.grid, world.objects, world.agents
    colours = np.zeros((g.size, 3), dtype=np.uint8)
    for kind, rgb in TILE_RGB.items():
        colours[g.kinds == int(kind)] = rgb
    for obj, t in enumerate(o.types):
        colours[o.tile[obj]] = OBJECT_RGB.get(t, (255, 0, 255))
    busy = (o.reserved_by >= 0) | (o.user >= 0)
    colours[o.tile[busy]] = (colours[o.tile[busy]] * 0.6).astype(np.uint8)  # busy objects look darker
    image = np.repeat(np.repeat(colours.reshape(g.height, g.width, 3), tile_px, axis=0), tile_px, axis=1)
    inset = max(tile_px // 5, 1) if tile_px >= 4 else 0
    for slot in a.alive.nonzero()[0]:
        x, y = int(a.tile[slot]) % g.width, int(a.tile[slot]) // g.width
        x0, y0 = x * tile_px + inset, y * tile_px + inset
        x1, y1 = (x + 1) * tile_px - inset, (y + 1) * tile_px - inset
        image[y0:y1, x0:x1] = (20, 20, 20)
        if x1 - x0 > 2:
            image[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = agent_colour(int(slot))
    return image


def ansi_frame(world: World) -> str:
    """The map as text (the map file's glyphs; agents as 0-9a-z by slot) plus the clock and one line per agent."""
    g, o, a = world.grid, world.objects, world.agents
    chars = np.array([TILE_CHARS[TileKind(k)] for k in g.kinds.tolist()], dtype="<U1")
    for obj, t in enumerate(o.types):
        chars[o.tile[obj]] = OBJECT_CHAR.get(t, "?")
    for slot in a.alive.nonzero()[0]:
        chars[a.tile[slot]] = AGENT_CHARS[slot % len(AGENT_CHARS)]
    rows = ["".join(chars[y * g.width : (y + 1) * g.width]) for y in range(g.height)]
    tod = world.tick % world.ticks_per_day
    minutes = tod * 1440 // world.ticks_per_day
    rows.append(
        f"tick {world.tick}  day {world.tick // world.ticks_per_day}  {minutes // 60:02d}:{minutes % 60:02d}"
        f"  {world.weather.name}"
    )
    for slot in a.alive.nonzero()[0]:
        option = int(a.option[slot])
        needs = " ".join(f"{n[:3]} {a.needs[slot, k]:.2f}" for k, n in enumerate(NEED_NAMES))
        rows.append(
            f"{AGENT_CHARS[slot % len(AGENT_CHARS)]} {a.name(int(slot)):<10} "
            f"{OPTION_LABELS[option] if option >= 0 else '-':<13} {needs}  wallet {a.wallet[slot]:.2f}"
        )
    return "\n".join(rows) + "\n"

"""The town's static description for viewers (``GET /api/town``): the tile map, places and objects.

Telemetry carries what changes (agents, queues, prices); the map never changes while a server runs, so
viewers fetch it once. Tiles come as one string per row, one character per tile (``config.town_map.TILE_CHARS``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from townlet.config.town_map import TILE_CHARS, TileKind
from townlet.config.vocabulary import vocabulary
from townlet.telemetry.schema import SCHEMA_ID

if TYPE_CHECKING:
    from townlet.sim.simulation import Simulation


def town_description(sim: Simulation) -> dict[str, Any]:
    """Map, places, objects, the vocabulary (:mod:`townlet.config.vocabulary`) and the need thresholds."""
    w = sim.world
    town = w.town
    chars = [TILE_CHARS[TileKind(k)] for k in range(len(TileKind))]
    rows = ["".join(chars[k] for k in row) for row in town.tiles.tolist()]
    return {
        "schema": SCHEMA_ID,
        "config_id": sim.loaded.config_id,
        "name": town.name,
        "width": int(town.width),
        "height": int(town.height),
        "tiles": rows,
        "tile_legend": {TILE_CHARS[k]: k.name.lower() for k in TileKind},
        "places": [{"id": p.id, "kind": p.kind, "rect": list(p.rect)} for p in town.places],
        "objects": [{"id": o.id, "type": o.type, "place": o.place, "x": o.x, "y": o.y} for o in town.objects],
        "ticks_per_day": int(w.ticks_per_day),
        "capacity": int(w.agents.capacity),
        **vocabulary(),  # needs, options, activities, traits, weathers, tile_kinds
        # deficit levels the viewer colours needs by: below ok fine, from ok to critical a warning, then bad
        "need_thresholds": {"ok": float(sim.config.needs.ok_threshold), "critical": float(sim.config.needs.critical)},
        "live_tick_seconds": float(sim.config.time.live_tick_seconds),
    }

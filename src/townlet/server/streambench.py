"""Bytes per tick per viewer, whole-town stream against viewport stream, and what filtering costs the server.

One town in process, no sockets: each tick is published once (as a live server does) and rendered for
``viewers`` viewport viewers, each showing a ``width`` x ``height`` rectangle placed at a different spot of the
town. A whole-town viewer receives the tick's diff and event lines as published; a viewport viewer what
:class:`~townlet.server.viewport.ViewportFilter` renders for it. Times are wall-clock on this machine.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from townlet.server.viewport import ViewportFilter


def _stats(values: list[float], digits: int = 1) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "max": 0.0}
    return {
        "mean": round(statistics.fmean(values), digits),
        "p50": round(statistics.median(values), digits),
        "max": round(max(values), digits),
    }


def rects(width: int, height: int, size: tuple[int, int], count: int) -> list[tuple[int, int, int, int]]:
    """``count`` rectangles of ``size`` spread over the town (the first at its centre)."""
    w, h = min(size[0], width), min(size[1], height)
    out = [((width - w) // 2, (height - h) // 2)]
    for i in range(1, count):  # a low-discrepancy walk over the free positions
        out.append((int((i * 0.618034 % 1) * (width - w + 1)), int((i * 0.754878 % 1) * (height - h + 1))))
    return [(x, y, x + w - 1, y + h - 1) for x, y in out]


def measure_stream(
    overrides: list[str],
    ticks: int,
    warmup: int,
    viewers: int,
    size: tuple[int, int],
    config: str | None = None,
    seed: int | None = None,
    log: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """Publish ``ticks`` ticks after ``warmup`` and report bytes and milliseconds per tick (the JSON report)."""
    from townlet.config.loader import load_config
    from townlet.server.live import LiveTown

    say = log or (lambda text: None)
    with tempfile.TemporaryDirectory(prefix="townlet-stream-bench-") as tmp:
        loaded = load_config(config, [*overrides, f"console.state_dir={tmp}", "console.audit_fsync=false"])
        started = time.perf_counter()
        live = LiveTown.build(loaded, seed=seed)
        say(f"town built in {time.perf_counter() - started:.1f} s; warming up {warmup} ticks")
        cfg = loaded.config.server
        town = live.sim.world.town
        width, height = int(town.width), int(town.height)
        live.publisher.attach()
        cursor = live.viewers.subscribe()
        live.viewers.watch_viewport(True)
        try:
            for _ in range(warmup):
                live.sim.step()
            gc.collect()
            gc.freeze()  # as townlet serve does when its tick thread starts (full collections skip the town)
            filters = [
                ViewportFilter(width, height, cfg.viewport_max_tiles, cfg.viewport_margin, rect)
                for rect in rects(width, height, size, viewers)
            ]
            say(f"measuring {ticks} ticks with {viewers} viewport viewers of {size[0]}x{size[1]} tiles")
            rows = _measure(live, filters, ticks)
        finally:
            live.viewers.unsubscribe(cursor)
            live.publisher.close()
    return _report(live, loaded.config_id, width, height, size, filters, rows)


def _measure(live: Any, filters: list[ViewportFilter], ticks: int) -> list[dict[str, float]]:
    rows = []
    for i in range(ticks + 1):
        t0 = time.perf_counter()
        live.sim.step()
        tick_s = time.perf_counter() - t0
        seq = live.viewers.feed.seq
        entry = live.viewers.feed.get(seq)
        indexed = live.viewers.frame(seq)
        if entry is None or indexed is None:
            raise RuntimeError("the tick was not published (is telemetry off?)")
        frame, objects = indexed
        spent = [f.render_s for f in filters]
        sizes = [len(f.render(frame, objects, rebase=i == 0)) for f in filters]
        if i == 0:
            continue  # the first render of each viewer is its snapshot
        render_s = [f.render_s - s for f, s in zip(filters, spent, strict=True)]
        rows.append(
            {
                "tick_ms": tick_s * 1000,
                "full_bytes": float(len(entry[1].diff)),
                "view_bytes": statistics.fmean(sizes),
                "view_agents": statistics.fmean(len(f.agents) for f in filters),
                "index_ms": frame.built_s * 1000,
                "render_ms": statistics.fmean(render_s) * 1000,
                "filter_ms": (frame.built_s + sum(render_s)) * 1000,
            }
        )
    return rows


def _report(
    live: Any,
    config_id: str,
    width: int,
    height: int,
    size: tuple[int, int],
    filters: list[ViewportFilter],
    rows: list[dict[str, float]],
) -> dict[str, Any]:
    def col(key: str, digits: int = 1) -> dict[str, float]:
        return _stats([r[key] for r in rows], digits)

    full, view = col("full_bytes", 0), col("view_bytes", 0)
    tick, cost = col("tick_ms", 3), col("filter_ms", 3)
    latest = live.viewers.feed.get(live.viewers.feed.seq)
    whole = len(latest[1].snapshot()) if latest is not None else 0
    return {
        "benchmark": "viewer stream bytes",
        "agents": int(live.sim.world.agents.alive.sum()),
        "town": [width, height],
        "config_id": config_id,
        "ticks": len(rows),
        "viewport": {"tiles": list(size), "viewers": len(filters), "margin": filters[0].margin},
        "full_bytes_per_tick": full,
        "viewport_bytes_per_tick": view,
        "viewport_agents": col("view_agents"),
        "ratio_viewport_to_full": round(view["mean"] / full["mean"], 4) if full["mean"] else 0.0,
        "full_snapshot_bytes": whole,
        "tick_ms": tick,
        "index_ms_per_tick": col("index_ms", 3),
        "render_ms_per_viewer_tick": col("render_ms", 3),
        "filter_ms_per_tick_all_viewers": cost,
        "filter_share_of_tick": round(cost["mean"] / tick["mean"], 4) if tick["mean"] else 0.0,
    }

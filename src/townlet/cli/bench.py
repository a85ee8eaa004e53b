"""``townlet bench``: ticks/s, agent-steps/s, per-phase milliseconds and peak memory, as JSON."""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from typing import Any

from townlet.config.loader import load_config
from townlet.sim.simulation import Simulation

EXAMPLES = """examples:
  townlet bench --json                                   # 8 agents, default town
  townlet bench --agents 1000 --town-scale 4 --ticks 2000 --json
  townlet bench --agents 64 --repeat 5 --set features.relationships=OFF
  townlet bench --env --variant full --towns 8 --json      # + env steps/s, batched vs looped envs
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``bench`` subcommand."""
    from townlet.cli.main import add_config_arguments

    p = sub.add_parser("bench", help="measure simulation speed (JSON figures)", formatter_class=formatter,
                       description="Time the full tick with scripted agents. Each repeat builds a fresh town, "
                                   "runs --warmup ticks untimed, then times --ticks ticks; figures are medians.",
                       epilog=EXAMPLES)
    add_config_arguments(p)
    p.add_argument("--agents", type=int, default=8, metavar="N", help="population (default 8)")
    p.add_argument("--town-scale", type=int, default=1, metavar="K", help="tile the town K x K (default 1)")
    p.add_argument("--ticks", type=int, default=2000, metavar="T", help="timed ticks per repeat (default 2000)")
    p.add_argument("--warmup", type=int, default=1000, metavar="W",
                   help="untimed ticks first, so lazily built distance fields exist (default 1000 = 1 day)")
    p.add_argument("--repeat", type=int, default=3, metavar="R", help="repeats; medians reported (default 3)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="run seed (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON only (default: JSON, pretty-printed)")
    p.add_argument("--env", action="store_true",
                   help="also time the RL env (adds an 'env' block): steps/s per variant, batched vs looped")
    p.add_argument("--variant", action="append", choices=("full", "hybrid", "compact"), default=None,
                   help="observation variant for --env (repeatable; default: all three)")
    p.add_argument("--towns", type=int, default=8, metavar="N", help="towns in the batched --env figure (default 8)")
    p.add_argument("--env-steps", type=int, default=1000, metavar="S",
                   help="timed env steps per figure (default 1000, after 200 untimed)")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="also time the batch with K forked worker processes stepping shares of the towns beside "
                        "this one (default 1: two processes, for two cores; 0: in process only)")
    p.set_defaults(handler=bench_command)


def bench_once(sim: Simulation, ticks: int, warmup: int) -> dict[str, Any]:
    """Time ``ticks`` ticks after ``warmup`` untimed ones; return the raw figures of one repeat."""
    for _ in range(warmup):
        sim.step()
    before = dict(sim.phase_total)
    agent_ticks = 0
    alive = sim.world.agents.alive
    t0 = time.perf_counter()
    for _ in range(ticks):
        sim.step()
        agent_ticks += int(alive.sum())
    elapsed = time.perf_counter() - t0
    phase_ms = {name: (sim.phase_total[name] - before.get(name, 0.0)) * 1000 / ticks for name in sim.phase_total}
    return {"seconds": elapsed, "ticks_per_s": ticks / elapsed, "agent_steps_per_s": agent_ticks / elapsed,
            "phase_ms": phase_ms}


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_command(args: argparse.Namespace) -> int:
    """Run the benchmark and print JSON."""
    if args.agents < 1 or args.town_scale < 1 or args.ticks < 1 or args.repeat < 1 or args.warmup < 0:
        print("townlet bench: error: --agents, --town-scale, --ticks and --repeat must be positive", file=sys.stderr)
        return 2
    overrides = [f"population.agents={args.agents}", f"town.scale={args.town_scale}", *args.overrides]
    loaded = load_config(args.config, overrides)
    runs = []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        sim = Simulation(loaded, seed=args.seed + i)
        build = time.perf_counter() - t0
        figures = bench_once(sim, args.ticks, args.warmup)
        figures["build_s"] = build
        runs.append(figures)
        print(f"bench: repeat {i + 1}/{args.repeat}: {figures['ticks_per_s']:.0f} ticks/s", file=sys.stderr)
    phases = runs[0]["phase_ms"].keys()
    ticks_per_s = statistics.median(r["ticks_per_s"] for r in runs)
    agents_mean = round(statistics.median(r["agent_steps_per_s"] / r["ticks_per_s"] for r in runs))
    target = loaded.config.telemetry.target_tick_ms(agents_mean)
    result = {
        "agents": args.agents,
        "town_scale": args.town_scale,
        "map": f"{sim.world.grid.width}x{sim.world.grid.height}",
        "ticks": args.ticks,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "ticks_per_s": round(ticks_per_s, 1),
        "agent_steps_per_s": round(statistics.median(r["agent_steps_per_s"] for r in runs), 1),
        "phase_ms": {p: round(statistics.median(r["phase_ms"][p] for r in runs), 4) for p in phases},
        "tick_ms": round(1000.0 / ticks_per_s, 4),
        "target_tick_ms": None if target is None else round(target, 4),
        "headroom": None if target is None else round(1.0 - 1000.0 / ticks_per_s / target, 4),
        "build_s": round(statistics.median(r["build_s"] for r in runs), 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "config_id": loaded.config_id,
    }
    if args.env:
        from townlet.env.speed import env_figures

        if args.towns < 1 or args.env_steps < 1 or args.workers < 0:
            print("townlet bench: error: --towns and --env-steps must be positive", file=sys.stderr)
            return 2
        print("bench: timing the env...", file=sys.stderr)
        env_sets = [f"town.scale={args.town_scale}", *args.overrides]
        result["env"] = env_figures(args.variant or ["full", "hybrid", "compact"], args.agents, args.towns,
                                    args.env_steps, 200, args.seed, env_sets, args.workers)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0

"""``townlet bench``: ticks/s, agent-steps/s, per-phase milliseconds and peak memory, as JSON."""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from townlet.config.loader import load_config
from townlet.sim.simulation import Simulation

EXAMPLES = """examples:
  townlet bench --json                                   # 8 agents, default town
  townlet bench --agents 1000 --town-scale 4 --ticks 2000 --json
  townlet bench --agents 64 --repeat 5 --set features.relationships=OFF
  townlet bench --env --variant full --towns 8 --json      # + env steps/s, batched vs looped envs
  townlet bench --scale-series --json                      # 8 .. 10,000 agents, each in its own process
  townlet bench --scale-series --baseline-src ../base/src  # ... beside another checkout's code, interleaved
"""

# The scale series: (agents, town scale, timed ticks, warmup ticks). Ticks shrink as towns grow so every size
# times a comparable stretch of work (small towns more, so a second of someone else's load moves them less);
# the warmup lets each town settle into its daily routine.
SCALE_SERIES = (
    (8, 1, 10000, 1000),
    (64, 1, 4000, 1000),
    (1000, 4, 500, 1000),
    (4000, 8, 200, 1000),
    (10000, 12, 100, 1000),
)
SERIES_REFERENCE = (1000, 4)  # the size every other size's cost per agent-step is compared with
BASELINE_MAX_AGENTS = 1000  # --baseline-src times sizes up to this (older code's big towns take GBs and minutes)


def register(sub: Any, formatter: Any) -> None:
    """Add the ``bench`` subcommand."""
    from townlet.cli.main import add_config_arguments

    p = sub.add_parser(
        "bench",
        help="measure simulation speed (JSON figures)",
        formatter_class=formatter,
        description="Time the full tick with scripted agents. Each repeat builds a fresh town, "
        "runs --warmup ticks untimed, then times --ticks ticks; figures are medians.",
        epilog=EXAMPLES,
    )
    add_config_arguments(p)
    p.add_argument("--agents", type=int, default=8, metavar="N", help="population (default 8)")
    p.add_argument("--town-scale", type=int, default=1, metavar="K", help="tile the town K x K (default 1)")
    p.add_argument("--ticks", type=int, default=2000, metavar="T", help="timed ticks per repeat (default 2000)")
    p.add_argument(
        "--warmup",
        type=int,
        default=1000,
        metavar="W",
        help="untimed ticks first, so lazily built distance fields exist (default 1000 = 1 day)",
    )
    p.add_argument("--repeat", type=int, default=3, metavar="R", help="repeats; medians reported (default 3)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="run seed (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON only (default: JSON, pretty-printed)")
    p.add_argument(
        "--env",
        action="store_true",
        help="also time the RL env (adds an 'env' block): steps/s per variant, batched vs looped",
    )
    p.add_argument(
        "--variant",
        action="append",
        choices=("full", "hybrid", "compact"),
        default=None,
        help="observation variant for --env (repeatable; default: all three)",
    )
    p.add_argument("--towns", type=int, default=8, metavar="N", help="towns in the batched --env figure (default 8)")
    p.add_argument(
        "--env-steps",
        type=int,
        default=1000,
        metavar="S",
        help="timed env steps per figure (default 1000, after 200 untimed)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="K",
        help="also time the batch with K forked worker processes stepping shares of the towns beside "
        "this one (default 1: two processes, for two cores; 0: in process only)",
    )
    p.add_argument(
        "--scale-series",
        action="store_true",
        help="time 8, 64, 1,000 @4, 4,000 @8 and 10,000 @12 agents, each size in its own process "
        "(so peak RSS is per size); prints us per agent-step, peak RSS and ratios to 1,000 @4",
    )
    p.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --scale-series: also time each size with the code in DIR (a checkout's src/) "
        "interleaved with this code's, and report new/base speed ratios",
    )
    p.set_defaults(handler=bench_command)


def bench_once(sim: Simulation, ticks: int, warmup: int) -> dict[str, Any]:
    """Time ``ticks`` ticks after ``warmup`` untimed ones; return the raw figures of one repeat.

    ``cpu_us_per_agent_step`` is this process's CPU time per agent-step: on a shared, busy machine it moves
    far less with other people's load than the wall-clock figures do.
    """
    for _ in range(warmup):
        sim.step()
    before = dict(sim.phase_total)
    agent_ticks = 0
    alive = sim.world.agents.alive
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(ticks):
        sim.step()
        agent_ticks += int(alive.sum())
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    phase_ms = {name: (sim.phase_total[name] - before.get(name, 0.0)) * 1000 / ticks for name in sim.phase_total}
    return {
        "seconds": elapsed,
        "ticks_per_s": ticks / elapsed,
        "agent_steps_per_s": agent_ticks / elapsed,
        "cpu_us_per_agent_step": cpu * 1e6 / max(agent_ticks, 1),
        "phase_ms": phase_ms,
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_command(args: argparse.Namespace) -> int:
    """Run the benchmark and print JSON."""
    if args.agents < 1 or args.town_scale < 1 or args.ticks < 1 or args.repeat < 1 or args.warmup < 0:
        print("townlet bench: error: --agents, --town-scale, --ticks and --repeat must be positive", file=sys.stderr)
        return 2
    if args.scale_series:
        return scale_series(args)
    overrides = [f"population.agents={args.agents}", f"town.scale={args.town_scale}", *args.overrides]
    loaded = load_config(args.config, overrides)
    runs = []
    map_size = ""
    for i in range(args.repeat):
        t0 = time.perf_counter()
        sim = Simulation(loaded, seed=args.seed + i)
        build = time.perf_counter() - t0
        figures = bench_once(sim, args.ticks, args.warmup)
        figures["build_s"] = build
        runs.append(figures)
        map_size = f"{sim.world.grid.width}x{sim.world.grid.height}"
        del sim  # this repeat's town goes before the next is built, so peak RSS is one town's
        print(f"bench: repeat {i + 1}/{args.repeat}: {figures['ticks_per_s']:.0f} ticks/s", file=sys.stderr)
    phases = runs[0]["phase_ms"].keys()
    ticks_per_s = statistics.median(r["ticks_per_s"] for r in runs)
    agents_mean = round(statistics.median(r["agent_steps_per_s"] / r["ticks_per_s"] for r in runs))
    target = loaded.config.telemetry.target_tick_ms(agents_mean)
    result = {
        "agents": args.agents,
        "town_scale": args.town_scale,
        "map": map_size,
        "ticks": args.ticks,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "ticks_per_s": round(ticks_per_s, 1),
        "agent_steps_per_s": round(statistics.median(r["agent_steps_per_s"] for r in runs), 1),
        "us_per_agent_step": round(1e6 / statistics.median(r["agent_steps_per_s"] for r in runs), 3),
        "cpu_us_per_agent_step": round(statistics.median(r["cpu_us_per_agent_step"] for r in runs), 3),
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
        result["env"] = env_figures(
            args.variant or ["full", "hybrid", "compact"],
            args.agents,
            args.towns,
            args.env_steps,
            200,
            args.seed,
            env_sets,
            args.workers,
        )
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


# One repeat of one size of the series, run with ``python -c`` in a fresh process of either checkout's code: it
# needs only what every version has (load_config, Simulation, bench_once), so a baseline is timed by the same
# harness. CPU time is this process's own (build and warmup excluded).
SERIES_CHILD = """
import json, resource, sys, time
from townlet.cli.bench import bench_once
from townlet.config.loader import load_config
from townlet.sim.simulation import Simulation
spec = json.loads(sys.argv[1])
sim = Simulation(load_config(spec["config"], spec["overrides"]), seed=spec["seed"])
bench_once(sim, 1, spec["warmup"])
c0 = time.process_time()
r = bench_once(sim, spec["ticks"], 0)
cpu = time.process_time() - c0
print(json.dumps({"map": f"{sim.world.grid.width}x{sim.world.grid.height}", "ticks_per_s": r["ticks_per_s"],
                  "agent_steps_per_s": r["agent_steps_per_s"],
                  "cpu_us_per_agent_step": cpu * 1e6 / (r["agent_steps_per_s"] * r["seconds"]),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))
"""


def _series_repeat(
    src: Path | None, args: argparse.Namespace, agents: int, scale: int, ticks: int, warmup: int, seed: int
) -> dict[str, Any]:
    """One repeat of one size in a fresh process (of the code in ``src``, or this code); its raw figures."""
    spec = {
        "config": None if args.config is None else str(args.config),
        "seed": seed,
        "ticks": ticks,
        "warmup": warmup,
        "overrides": [f"population.agents={agents}", f"town.scale={scale}", *args.overrides],
    }
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    done = subprocess.run(
        [sys.executable, "-c", SERIES_CHILD, json.dumps(spec)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench of {agents} agents @{scale} failed: {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _series_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats (peak RSS: the largest)."""
    rate = statistics.median(r["agent_steps_per_s"] for r in runs)
    return {
        "map": runs[0]["map"],
        "ticks_per_s": round(statistics.median(r["ticks_per_s"] for r in runs), 1),
        "agent_steps_per_s": round(rate, 1),
        "us_per_agent_step": round(1e6 / rate, 3),
        "cpu_us_per_agent_step": round(statistics.median(r["cpu_us_per_agent_step"] for r in runs), 3),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
    }


def scale_series(args: argparse.Namespace) -> int:
    """Time every size of :data:`SCALE_SERIES` (each repeat in its own process), with ratios; print JSON and a table.

    With a baseline, its repeats alternate with this code's, so both see the same load on a shared machine.
    """
    base = args.baseline_src
    if base is not None and not (base / "townlet").is_dir():
        print(f"townlet bench: error: --baseline-src {base} holds no townlet package", file=sys.stderr)
        return 2
    rows = []
    for agents, scale, ticks, warmup in SCALE_SERIES:
        print(f"bench: series: {agents} agents @{scale} ({ticks} ticks after {warmup})...", file=sys.stderr)
        with_base = base is not None and agents <= BASELINE_MAX_AGENTS
        new_runs, base_runs = [], []
        try:
            for i in range(args.repeat):
                new_runs.append(_series_repeat(None, args, agents, scale, ticks, warmup, args.seed + i))
                if with_base:
                    base_runs.append(_series_repeat(base.resolve(), args, agents, scale, ticks, warmup, args.seed + i))
        except RuntimeError as exc:
            print(f"townlet bench: error: {exc}", file=sys.stderr)
            return 1
        row = {"agents": agents, "town_scale": scale, "ticks": ticks, "warmup": warmup, **_series_row(new_runs)}
        if base_runs:
            b = _series_row(base_runs)
            row.update(
                base_agent_steps_per_s=b["agent_steps_per_s"],
                base_ticks_per_s=b["ticks_per_s"],
                base_cpu_us_per_agent_step=b["cpu_us_per_agent_step"],
                base_peak_rss_mb=b["peak_rss_mb"],
                speedup_vs_base=round(row["agent_steps_per_s"] / b["agent_steps_per_s"], 3),
                cpu_speedup_vs_base=round(b["cpu_us_per_agent_step"] / row["cpu_us_per_agent_step"], 3),
            )
        rows.append(row)
    ref = next(r for r in rows if (r["agents"], r["town_scale"]) == SERIES_REFERENCE)
    for r in rows:
        r["vs_1000_at_4"] = round(r["us_per_agent_step"] / ref["us_per_agent_step"], 3)
        r["cpu_vs_1000_at_4"] = round(r["cpu_us_per_agent_step"] / ref["cpu_us_per_agent_step"], 3)
    result = {
        "series": rows,
        "repeat": args.repeat,
        "reference": "1000@4",
        "baseline_src": None if base is None else str(base),
    }
    print(series_table(rows), file=sys.stderr)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


def series_table(rows: list[dict[str, Any]]) -> str:
    """The scale series as a plain-text table (to stderr beside the JSON); ``nan`` where no baseline ran."""
    nan = float("nan")
    lines = [
        f"{'agents':>7} {'scale':>5} {'map':>9} {'us/agent-step':>13} {'vs 1000@4':>9} {'cpu us':>7} "
        f"{'cpu vs 1000@4':>13} {'peak RSS MB':>11} {'x base':>7} {'cpu x base':>10}"
    ]
    for r in rows:
        lines.append(
            f"{r['agents']:>7} {r['town_scale']:>5} {r['map']:>9} {r['us_per_agent_step']:>13.3f} "
            f"{r['vs_1000_at_4']:>9.3f} {r['cpu_us_per_agent_step']:>7.3f} {r['cpu_vs_1000_at_4']:>13.3f} "
            f"{r['peak_rss_mb']:>11.1f} {r.get('speedup_vs_base', nan):>7.3f} "
            f"{r.get('cpu_speedup_vs_base', nan):>10.3f}"
        )
    return "\n".join(lines)

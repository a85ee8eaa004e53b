"""``townlet bench-live``: load-test the live server with WebSocket spectators on loopback; prints JSON.

Reports the tick lag at 1x with the spectators connected (p99 must stay under 50 ms) and the tick rate
at 100x with and without them (within 10%), once per driving policy (by default the scripted routine and
the learned policy shipped with Townlet, side by side). Takes about three times ``--duration`` seconds per
policy. Spectators stream as the browser viewer does (``--view auto``: a viewport of ``--viewport`` tiles
each, placed over the town, above ``server.viewport_above`` agents); ``--view full`` makes them take the
whole town.

``--stream-bytes`` measures instead, in process and without sockets, the bytes per tick per viewer of the
whole-town stream and of the viewport stream, and what filtering costs the server per tick.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from townlet.cli.main import add_config_arguments

EXAMPLES = """examples:
  townlet bench-live                                  # 100 spectators, 3 phases of 60 s
  townlet bench-live --spectators 20 --duration 10 --json
  townlet bench-live --policy default --policy runs/ppo/final.pt   # two learned policies side by side
  townlet bench-live --set population.agents=32 --output live-bench.json
  townlet bench-live --set population.agents=1000 --set town.scale=4 --spectators 20 --view viewport
  townlet bench-live --stream-bytes --set population.agents=1000 --set town.scale=4 --spectators 20
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``bench-live`` subcommand."""
    p = sub.add_parser(
        "bench-live",
        help="load-test the live server with WebSocket spectators (JSON report)",
        formatter_class=formatter,
        description=__doc__,
        epilog=EXAMPLES,
    )
    add_config_arguments(p)
    p.add_argument("--spectators", type=int, default=100, metavar="N", help="WebSocket viewers (default 100)")
    p.add_argument("--duration", type=float, default=60.0, metavar="S", help="seconds per phase (default 60)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="run seed (default: the config's seed)")
    p.add_argument("--json", action="store_true", help="one line of JSON (default: pretty-printed)")
    p.add_argument("--output", default=None, metavar="FILE", help="also write the report to FILE")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--view",
        choices=("auto", "full", "viewport"),
        default="auto",
        help="what spectators ask for (?view=): auto (as the browser), the full town, or their viewport",
    )
    p.add_argument(
        "--viewport",
        default="48x27",
        metavar="WxH",
        help="tiles each viewport spectator shows (default 48x27: a 1280x720 map zoomed in)",
    )
    p.add_argument(
        "--stream-bytes",
        action="store_true",
        help="measure bytes per tick per viewer, whole town vs viewport, in process (no server)",
    )
    p.add_argument("--ticks", type=int, default=200, metavar="N", help="ticks measured by --stream-bytes")
    p.add_argument("--warmup", type=int, default=100, metavar="N", help="ticks run before --stream-bytes measures")
    p.add_argument(
        "--policy",
        action="append",
        default=None,
        metavar="REF",
        help="who drives (repeatable: one run each, side by side in by_policy; default: scripted and "
        "default, the learned policy shipped with Townlet)",
    )
    p.set_defaults(handler=bench_live_command)


def bench_live_command(args: argparse.Namespace) -> int:
    """Run the benchmark and print its report."""
    from townlet.cli.policy_arg import fail, policy_errors
    from townlet.logs import configure_logging
    from townlet.server.loadtest import compare_policies, report_path

    if args.spectators < 1 or args.duration <= 0 or args.ticks < 1 or args.warmup < 0:
        print("townlet: error: --spectators, --duration and --ticks must be positive", file=sys.stderr)
        return 2
    size = _size(args.viewport)
    if size is None:
        print(f"townlet: error: --viewport must be WxH in tiles (like 48x27), not {args.viewport!r}", file=sys.stderr)
        return 2
    configure_logging("kv", "error")  # the report says what matters; drop alerts under load are expected
    say = lambda text: print(f"bench-live: {text}", file=sys.stderr, flush=True)  # noqa: E731
    if args.stream_bytes:
        from townlet.server.streambench import measure_stream

        report = measure_stream(
            args.overrides, args.ticks, args.warmup, args.spectators, size, args.config, args.seed, say
        )
        report_path(args.output, report)
        print(json.dumps(report) if args.json else json.dumps(report, indent=2))
        return 0
    try:
        report = compare_policies(
            args.policy or ["scripted", "default"],
            args.spectators,
            args.duration,
            args.overrides,
            args.config,
            args.seed,
            log=say,
            view=(args.view, size),
            # Unasked, the shipped policy is only timed in towns it fits (it was trained on the default town).
            optional=frozenset() if args.policy else frozenset({"default"}),
        )
    except policy_errors() as exc:
        fail(exc)
    report_path(args.output, report)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 1 if args.strict and not report["pass"] else 0


def _size(text: str) -> tuple[int, int] | None:
    """``WxH`` as two positive integers, or None."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and 0 < int(p) <= 4096 for p in parts):
        return None
    return int(parts[0]), int(parts[1])

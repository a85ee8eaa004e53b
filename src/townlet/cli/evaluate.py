"""``townlet evaluate``: a policy's KPI scorecard on fixed-seed scenarios, and the A/B gate against a baseline."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

EXAMPLES = """examples:
  townlet evaluate --policy scripted --json                     # the routine on evaluation.seeds, 3 days each
  townlet evaluate --policy random --days 1 --seed 7 --json
  townlet evaluate --checkpoint runs/hybrid/final.pt --suite    # every curriculum stage x every seed
  townlet evaluate --checkpoint new.pt --baseline release.pt    # the A/B gate: exit 1 when new.pt fails it
  townlet evaluate --checkpoint compact.pt --baseline hybrid.pt --set features.observations=compact
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``evaluate`` subcommand."""
    from townlet.cli.main import add_config_arguments

    p = sub.add_parser("evaluate", help="score a policy on fixed-seed scenarios (KPI scorecard, A/B gate)",
                       formatter_class=formatter, epilog=EXAMPLES,
                       description="Run a policy on fixed-seed scenarios (evaluation.seeds x the stage(s) asked "
                                   "for) and print its KPI scorecard; with --baseline, also the A/B gate.")
    add_config_arguments(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--checkpoint", metavar="PATH", help="a policy checkpoint")
    who.add_argument("--policy", choices=("scripted", "random"), help="a built-in policy")
    p.add_argument("--days", type=float, default=None, metavar="D", help="in-sim days per scenario "
                   "(default evaluation.days)")
    p.add_argument("--seed", type=int, action="append", default=None, metavar="S",
                   help="scenario seed (repeatable; default evaluation.seeds)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--stage", action="append", default=None, metavar="NAME", help="curriculum stage (repeatable)")
    where.add_argument("--suite", action="store_true", help="every stage of the suite (evaluation.stages, or all)")
    p.add_argument("--baseline", metavar="scripted|random|PATH", default=None,
                   help="also evaluate this policy and gate the first against it (exit 1 when the gate fails)")
    p.add_argument("--sample", action="store_true", help="learned policies sample options instead of the greedy pick")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=evaluate_command)


def evaluate_command(args: argparse.Namespace) -> int:
    """Evaluate, print the scorecard (and the gate)."""
    from townlet.policy.checkpoint import CheckpointError
    from townlet.training.evaluation import evaluate
    from townlet.training.gate import gate_evaluations

    stages: list[str | None] | None = None if args.suite else (args.stage or [None])
    kwargs = {"stages": stages, "seeds": args.seed, "days": args.days, "greedy": False if args.sample else None}
    err = Console(stderr=True)

    def progress(label: str, done: int, total: int) -> None:
        if not args.json or err.is_terminal:
            err.print(f"[dim]{done}/{total} {label}[/]")

    policy = args.checkpoint or args.policy
    try:
        result = evaluate(policy, args.config, args.overrides, progress=progress, **kwargs)
        base = evaluate(args.baseline, args.config, args.overrides, progress=progress, **kwargs) \
            if args.baseline else None
    except CheckpointError as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    from townlet.config.loader import load_config

    loaded = load_config(args.config, args.overrides)
    out: dict[str, Any] = {
        "policy": result.policy,
        "config_id": loaded.config_id,
        "stages": sorted({str(s["stage"]) for s in result.scenarios}),
        "seeds": sorted({s["seed"] for s in result.scenarios}),
        "days": result.days,
        **result.scorecard,
        "scenarios": result.scenarios,
    }
    passed = True
    if base is not None:
        verdict = gate_evaluations(base, result, loaded.config.evaluation.gate)
        passed = verdict.passed
        out["baseline"] = {"policy": base.policy, **base.scorecard}
        out["gate"] = verdict.to_dict()
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        _table(Console(), out)
    return 0 if passed else 1


def _table(console: Console, out: dict[str, Any]) -> None:
    from townlet.training.evaluation import COUNT_KEYS

    table = Table(title=f"Scorecard - {out['policy']} on stages {', '.join(out['stages'])}, seeds "
                        f"{', '.join(map(str, out['seeds']))}, {out['days']:g} day(s) each")
    table.add_column("KPI")
    table.add_column(out["policy"], justify="right")
    base = out.get("baseline")
    if base:
        table.add_column(f"baseline {base['policy']}", justify="right")
        table.add_column("gate", justify="center")
    checks = {c["kpi"]: c for c in out.get("gate", {}).get("checks", [])}
    keys = [k for k in out["scenarios"][0]["scorecard"] if k not in ("agent_days", "ticks")]
    for key in keys:
        fmt = (lambda v: str(int(v))) if key in COUNT_KEYS else (lambda v: f"{float(v):.4g}")
        row = [key, fmt(out[key])]
        if base:
            mark = "" if key not in checks else ("ok" if checks[key]["ok"] else "[red]FAIL[/]")
            row += [fmt(base[key]), mark]
        table.add_row(*row)
    console.print(table)
    if "gate" in out:
        g = out["gate"]
        console.print("A/B gate: " + ("[green]passed[/]" if g["passed"] else "[red]failed[/]: " +
                                      "; ".join(g["failures"])))

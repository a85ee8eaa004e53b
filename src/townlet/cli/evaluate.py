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
  townlet evaluate --policy default --baseline scripted         # the shipped learned policy against the routine
  townlet evaluate --policy release --suite                     # the registry's release on every stage
  townlet evaluate --checkpoint runs/hybrid/final.pt --suite    # every curriculum stage x every seed
  townlet evaluate --checkpoint new.pt --baseline release.pt    # the A/B gate: exit 1 when new.pt fails it
  townlet evaluate --checkpoint compact.pt --baseline hybrid.pt --set features.observations=compact
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``evaluate`` subcommand."""
    from townlet.cli.main import add_config_arguments
    from townlet.cli.policy_arg import HELP

    p = sub.add_parser(
        "evaluate",
        help="score a policy on fixed-seed scenarios (KPI scorecard, A/B gate)",
        formatter_class=formatter,
        epilog=EXAMPLES,
        description="Run a policy on fixed-seed scenarios (evaluation.seeds x the stage(s) asked "
        "for) and print its KPI scorecard; with --baseline, also the A/B gate.",
    )
    add_config_arguments(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--checkpoint", metavar="PATH", help="a policy checkpoint (the same as --policy PATH)")
    who.add_argument("--policy", metavar="REF", help=HELP)
    p.add_argument(
        "--registry",
        default=None,
        metavar="PATH",
        help="the policy registry for release and hashes (default promotion.registry)",
    )
    p.add_argument(
        "--days", type=float, default=None, metavar="D", help="in-sim days per scenario (default evaluation.days)"
    )
    p.add_argument(
        "--seed",
        type=int,
        action="append",
        default=None,
        metavar="S",
        help="scenario seed (repeatable; default evaluation.seeds)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--stage", action="append", default=None, metavar="NAME", help="curriculum stage (repeatable)")
    where.add_argument("--suite", action="store_true", help="every stage of the suite (evaluation.stages, or all)")
    p.add_argument(
        "--baseline",
        metavar="REF",
        default=None,
        help="also evaluate this policy (any --policy reference) and gate the first against it (exit 1 "
        "when the gate fails)",
    )
    p.add_argument("--sample", action="store_true", help="learned policies sample options instead of the greedy pick")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=evaluate_command)


def _policy(ref: str, loaded: Any, args: argparse.Namespace, err: Any) -> Any:
    """What ``evaluate`` runs for a reference: a built-in's name or the checkpoint (it must be runnable here)."""
    from townlet.cli.policy_arg import choose, fail
    from townlet.policy.compat import IncompatiblePolicy, check_config

    choice = choose(ref, loaded, args)
    if choice.checkpoint is None:
        return choice.kind
    try:
        check_config(choice.checkpoint, loaded, strict=False)
    except IncompatiblePolicy as exc:
        fail(exc)
    try:
        check_config(choice.checkpoint, loaded)
    except IncompatiblePolicy as exc:  # scored anyway: the suite compares across variants and stages on purpose
        err.print(f"[yellow]note:[/] {exc}")
    return choice.checkpoint


def _promotion_state(args: argparse.Namespace, loaded: Any, hashes: list[str]) -> dict[str, Any] | None:
    from townlet.cli.policy_arg import registry_of

    registry = registry_of(args, loaded)
    if registry is None:
        return None
    with registry:
        state = registry.state()
    return {**state, "evaluated_release": state["release"] in hashes}


def evaluate_command(args: argparse.Namespace) -> int:
    """Evaluate, print the scorecard (and the gate)."""
    import logging

    from townlet.config.loader import load_config
    from townlet.logs import configure_logging, log_event
    from townlet.policy.checkpoint import CheckpointError
    from townlet.training.evaluation import evaluate
    from townlet.training.gate import gate_evaluations

    stages: list[str | None] | None = None if args.suite else (args.stage or [None])
    kwargs = {"stages": stages, "seeds": args.seed, "days": args.days, "greedy": False if args.sample else None}
    err = Console(stderr=True)

    def progress(label: str, done: int, total: int) -> None:
        if not args.json or err.is_terminal:
            err.print(f"[dim]{done}/{total} {label}[/]")

    loaded = load_config(args.config, args.overrides)
    configure_logging(loaded.config.logging.format, loaded.config.logging.level)
    policy = _policy(args.checkpoint or args.policy, loaded, args, err)
    baseline = _policy(args.baseline, loaded, args, err) if args.baseline else None
    try:
        result = evaluate(policy, args.config, args.overrides, progress=progress, **kwargs)
        base = (
            evaluate(baseline, args.config, args.overrides, progress=progress, **kwargs)
            if baseline is not None
            else None
        )
    except CheckpointError as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
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
    state = _promotion_state(args, loaded, [result.policy, *([base.policy] if base else [])])
    log_event(
        logging.getLogger("townlet.promotion"),
        "evaluation.scorecard",
        None,
        logging.INFO if passed else logging.WARNING,
        policy=result.policy,
        baseline=base.policy if base else None,
        gate=out.get("gate", {}).get("passed"),
        **{
            k: result.scorecard[k]
            for k in ("attendance", "self_sufficiency", "need_ok_share", "collapses")
            if k in result.scorecard
        },
        promotion_state=state,
    )
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        _table(Console(), out)
    return 0 if passed else 1


def _table(console: Console, out: dict[str, Any]) -> None:
    from townlet.training.evaluation import COUNT_KEYS

    table = Table(
        title=f"Scorecard - {out['policy']} on stages {', '.join(out['stages'])}, seeds "
        f"{', '.join(map(str, out['seeds']))}, {out['days']:g} day(s) each"
    )
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
        console.print(
            "A/B gate: " + ("[green]passed[/]" if g["passed"] else "[red]failed[/]: " + "; ".join(g["failures"]))
        )

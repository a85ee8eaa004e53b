"""``townlet capture``, ``townlet bc`` and ``townlet anneal``: record the scripted routine, clone it, hand over.

``capture`` writes a dataset directory (npz shards + ``manifest.json`` with sha256 checksums); ``bc`` trains
a policy checkpoint from it and reports the held-out action accuracy; ``anneal`` hands fixed-seed towns over
from 80% scripted agents to none, window by window, and says whether it completed or froze. See
docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from townlet.cli.extras import missing_extra

EXAMPLES = """examples:
  townlet capture --out data/bc                                # every scenario, imitation.capture seeds and ticks
  townlet capture --out data/small --seeds 1 --ticks 500 --scenarios routine,lateness
  townlet bc data/bc --out bc/policy.pt                        # then: townlet evaluate --checkpoint bc/policy.pt
  townlet anneal bc/policy.pt --json                           # 80/20 scripted/learned down to 0 scripted
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``capture``, ``bc`` and ``anneal`` subcommands."""
    from townlet.cli.main import add_config_arguments

    p = sub.add_parser(
        "capture",
        help="record scripted trajectories (with stress scenarios) for behaviour cloning",
        formatter_class=formatter,
        epilog=EXAMPLES,
        description="Run the scripted town under each scenario (routine, low_money, outage, "
        "price_spike, queue_contention, lateness) and record observations, masks and "
        "the routine's options into DIR: npz shards and a manifest with checksums.",
    )
    add_config_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="dataset directory (created)")
    p.add_argument(
        "--scenarios",
        default=None,
        metavar="A,B",
        help="comma-separated scenarios (default imitation.capture.scenarios: all six)",
    )
    p.add_argument("--seeds", type=_positive, default=None, metavar="N", help="episodes per scenario")
    p.add_argument("--ticks", type=_positive, default=None, metavar="T", help="ticks per episode")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="first run seed (default: the config's)")
    p.add_argument(
        "--variant",
        choices=("full", "hybrid", "compact"),
        default=None,
        help="observation variant (default features.observations)",
    )
    p.add_argument("--json", action="store_true", help="print the manifest summary as JSON")
    p.set_defaults(handler=capture_command)

    p = sub.add_parser(
        "bc",
        help="behaviour cloning: train a policy checkpoint from a captured dataset",
        formatter_class=formatter,
        epilog=EXAMPLES,
        description="Train the option policy to imitate the scripted routine (imitation.bc); "
        "whole episodes are held out to measure the action accuracy.",
    )
    add_config_arguments(p)
    p.add_argument("dataset", metavar="DATASET", help="a directory written by townlet capture")
    p.add_argument("--out", required=True, metavar="CHECKPOINT", help="checkpoint file to write")
    p.add_argument("--epochs", type=_positive, default=None, metavar="N", help="passes over the data")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=bc_command)

    p = sub.add_parser(
        "anneal",
        help="hand fixed-seed towns over from scripted to learned agents, or freeze",
        formatter_class=formatter,
        epilog=EXAMPLES,
        description="Start with imitation.anneal.start (80%) of the agents scripted and hand a "
        "step more to the learned policy after each window whose KPIs hold; freeze "
        "when a KPI falls more than max_drop (30%) below the scripted routine's.",
    )
    add_config_arguments(p)
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="the learned policy")
    p.add_argument(
        "--seed",
        type=int,
        action="append",
        default=None,
        metavar="S",
        help="town seed (repeatable; default evaluation.seeds)",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(handler=anneal_command)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _progress(json_only: bool) -> Progress:
    err = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=json_only and not err.is_terminal,
        transient=json_only,
    )


def capture_command(args: argparse.Namespace) -> int:
    """Record the dataset and summarise it."""
    from townlet.training.capture import capture

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()] if args.scenarios else None
    with _progress(args.json) as progress:
        task = progress.add_task("capture", total=None)

        def show(label: str, done: int, total: int) -> None:
            if done % 100 == 0 or done == total:
                progress.update(task, description=label, completed=done, total=total)

        try:
            manifest = capture(
                args.config,
                args.out,
                overrides=args.overrides,
                scenario_names=scenarios,
                seeds=args.seeds,
                ticks=args.ticks,
                variant=args.variant,
                first_seed=args.seed,
                progress=show,
            )
        except ValueError as exc:
            print(f"townlet: error: {exc}", file=sys.stderr)
            return 2
    summary = {k: v for k, v in manifest.items() if k != "shards"}
    summary["out"] = args.out
    summary["shards"] = len(manifest["shards"])
    if args.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        print(
            f"captured {summary['samples']} decisions in {summary['shards']} "
            f"shards: {', '.join(summary['scenarios'])} x {summary['seeds']} seeds x {summary['ticks']} ticks, "
            f"{summary['variant']} observations ({summary['obs_dim']} floats) -> {args.out}"
        )
    return 0


def bc_command(args: argparse.Namespace) -> int:
    """Train the clone, save it, report its accuracy (exit 1 when it misses the target)."""
    if (code := missing_extra("bc", "train", ("torch",))) is not None:
        return code
    from townlet.config.loader import load_config
    from townlet.policy.checkpoint import save
    from townlet.training.bc import train_bc
    from townlet.training.capture import DatasetError, load_dataset

    cfg = load_config(args.config, args.overrides).config.imitation.bc
    try:
        data = load_dataset(args.dataset)
    except DatasetError as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    epochs = args.epochs or cfg.epochs
    with _progress(args.json) as progress:
        task = progress.add_task("behaviour cloning", total=epochs)

        def show(epoch: int, total: int, acc: float) -> None:
            progress.update(task, completed=epoch, description=f"epoch {epoch}/{total}: held-out {acc:.2%}")

        checkpoint, report = train_bc(data, cfg, epochs=epochs, progress=show)
    save(checkpoint, args.out)
    result = {
        "checkpoint": args.out,
        "policy_hash": checkpoint.policy_hash,
        "variant": checkpoint.variant,
        **report.to_dict(),
    }
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        verdict = "reached" if report.passed else "MISSED"
        print(
            f"held-out action accuracy {report.holdout_accuracy:.2%} ({verdict} the {report.target:.0%} target) "
            f"over {report.holdout_samples} decisions of {len(report.holdout_episodes)} held-out episode(s); "
            f"policy {checkpoint.policy_hash} "
            f"-> {args.out}"
        )
    return 0 if report.passed else 1


def anneal_command(args: argparse.Namespace) -> int:
    """Run the anneal and print its outcome."""
    if (code := missing_extra("anneal", "train", ("torch",))) is not None:
        return code
    from townlet.policy.checkpoint import CheckpointError
    from townlet.training.anneal import run_anneal

    try:
        result = run_anneal(
            args.checkpoint, args.config, args.overrides, seeds=args.seed, progress=None if args.json else _print_step
        )
    except CheckpointError as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict()) + "\n")
    else:
        tail = f": {result.reason}" if result.reason else ""
        print(f"anneal {result.outcome} at {result.scripted_share:.0%} scripted{tail}")
    return 0


def _print_step(step: Any) -> None:
    kpis = ", ".join(f"{k} {step.kpis[k]:.3f} ({-d:+.0%})" for k, d in step.drops.items())
    print(f"window {step.window}: {step.scripted_share:.0%} scripted -> {step.decision}  [{kpis}]", file=sys.stderr)

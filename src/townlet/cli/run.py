"""``townlet run``: a headless town for N ticks, with a progress bar and a KPI summary (or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from townlet.config.loader import load_config
from townlet.logs import configure_logging
from townlet.policy.learned import torch_threads
from townlet.sim.simulation import Simulation

EXAMPLES = """examples:
  townlet run                                  # the default town for one in-sim day
  townlet run --ticks 5000 --seed 7            # five days, another seed
  townlet run my_town.yaml --set population.agents=16 --json
  townlet run --set features.relationships=OFF --ticks 2000 --json | jq .kpis
  townlet run --ticks 2000 --telemetry town.jsonl   # then: townlet telemetry replay town.jsonl --tick 1500
  townlet run --set 'telemetry.transports=[{kind: file, path: town.jsonl}]'   # the config's transports
  townlet run --policy default --json | jq .policy   # the learned policy shipped with Townlet drives
  townlet run --policy runs/ppo/final.pt --ticks 3000  # a checkpoint (it must fit the town: variant, size, config)
  townlet run --policy release                 # the policy registry's release (promotion.registry)
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``run`` subcommand."""
    from townlet.cli.main import add_config_arguments
    from townlet.cli.policy_arg import add_policy_argument

    p = sub.add_parser(
        "run",
        help="run a headless town for N ticks and report KPIs",
        formatter_class=formatter,
        description="Run the town headless (unpaced) and report KPIs; --policy says who drives the agents.",
        epilog=EXAMPLES,
    )
    add_config_arguments(p)
    p.add_argument(
        "--ticks", type=_positive, default=1000, metavar="N", help="ticks to simulate (default 1000 = 1 day)"
    )
    p.add_argument("--seed", type=int, default=None, metavar="S", help="run seed (default: the config's seed)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of tables")
    add_policy_argument(p, more="default scripted; with --resume, the policy the snapshot records")
    p.add_argument(
        "--telemetry",
        metavar="FILE",
        default=None,
        help="write the telemetry stream to FILE as JSONL (a snapshot line, then diff and event lines), "
        "besides the config's telemetry.transports",
    )
    p.add_argument(
        "--snapshot-out",
        metavar="PATH",
        default=None,
        help="write a snapshot of the final state to PATH (continue it with --resume)",
    )
    p.add_argument(
        "--resume",
        metavar="PATH",
        default=None,
        help="continue from a snapshot (its own config unless CONFIG is given) for --ticks more ticks",
    )
    p.set_defaults(handler=run_command)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _telemetry(sim: Simulation, path: str | None) -> Any:
    """Attach a publisher to the config's ``telemetry.transports`` plus ``path``; None when there are neither."""
    if path is None and not sim.config.telemetry.transports:
        return None
    from townlet.telemetry.publisher import TelemetryPublisher
    from townlet.telemetry.transports import FileTransport

    publisher = TelemetryPublisher.from_config(sim)
    if path is not None:
        # The run waits for the file rather than dropping: a generous buffer, flushed at the end.
        publisher.add_transport(FileTransport(path, name="run", buffer_ticks=100_000))
    return publisher.attach()


def _resume(args: argparse.Namespace) -> tuple[Simulation, Any]:
    """The town stored in ``args.resume`` and its policy: ``--policy``, else the one the snapshot records.

    The snapshot's own config is used unless CONFIG or ``--set`` is given (a mismatch needs a migration).
    """
    from townlet.cli.policy_arg import choose, fail, policy_errors, registry_of
    from townlet.sim import snapshot
    from townlet.training.policies import reinstate

    loaded = load_config(args.config, args.overrides) if (args.config or args.overrides) else None
    try:
        sim = snapshot.load(args.resume, loaded)
    except snapshot.SnapshotError as exc:
        raise SystemExit(f"townlet: error: {exc}") from None
    override = choose(args.policy, sim.loaded, args) if args.policy else None
    try:
        return sim, reinstate(sim, override, None if override else registry_of(args, sim.loaded))
    except policy_errors() as exc:
        fail(exc)


def _fresh(args: argparse.Namespace) -> tuple[Simulation, Any]:
    """A new town driven by ``--policy`` (scripted by default)."""
    from townlet.cli.policy_arg import choose, fail, policy_errors
    from townlet.training.policies import install

    loaded = load_config(args.config, args.overrides)
    choice = choose(args.policy or "scripted", loaded, args)
    sim = Simulation(loaded, seed=args.seed)
    try:
        install(sim, choice)
    except policy_errors() as exc:
        fail(exc)
    return sim, choice


def run_result(sim: Simulation) -> dict[str, Any]:
    """The ``--json`` contract: identity, driving policy, size, state hash and KPIs of a finished run."""
    from townlet.training.policies import describe

    return {
        "config_id": sim.loaded.config_id,
        "seed": sim.seed,
        "policy": describe(sim),
        "ticks": sim.ticks_run,
        "agents": int(sim.world.agents.alive.sum()),
        "state_hash": sim.state_hash(),
        "kpis": sim.kpis.report(sim.world),
        "migrations": list(sim.applied_migrations),
    }


def run_command(args: argparse.Namespace) -> int:
    """Build the simulation, run it with progress on stderr, print the result."""
    sim, _choice = _resume(args) if args.resume is not None else _fresh(args)
    configure_logging(sim.config.logging.format, sim.config.logging.level)  # as serve: structured, on stderr
    err = Console(stderr=True)
    for problem in sim.invariant_problems:
        err.print(f"[yellow]warning:[/] economy invariant: {problem}")
    publisher = _telemetry(sim, args.telemetry)
    show = err.is_terminal or not args.json
    with (
        Progress(
            TextColumn("[bold]tick"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not show,
            transient=args.json,
        ) as progress,
        torch_threads(sim.config.promotion.policy_threads),
    ):
        task = progress.add_task("run", total=args.ticks)
        sim.run(
            args.ticks, progress=lambda done: progress.update(task, completed=done), every=max(args.ticks // 100, 1)
        )
    if publisher is not None:
        publisher.close()
    if args.snapshot_out is not None:
        from townlet.sim import snapshot

        snapshot.write(sim, args.snapshot_out)
    result = run_result(sim)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        print_summary(Console(), result)
    return 0


def print_summary(console: Console, result: dict[str, Any]) -> None:
    """The human KPI table."""
    k = result["kpis"]
    policy = result["policy"]
    table = Table(
        title=f"Townlet run - config {result['config_id']}, seed {result['seed']}, "
        f"{result['ticks']} ticks, {result['agents']} agents, policy {policy['name']}"
        + (f" ({policy['hash']})" if policy["hash"] != policy["name"] else "")
    )
    table.add_column("KPI")
    table.add_column("value", justify="right")
    rows = [
        ("collapses", k["collapses"]),
        ("attendance", f"{k['attendance']:.1%}"),
        ("lateness (share of shifts late)", f"{k['lateness']:.1%}"),
        ("need ok share (all deficits < 0.7)", f"{k['need_ok_share']:.1%}"),
        ("queue conflicts", k["queue_conflicts"]),
        ("ghost steps", k["ghost_steps"]),
        ("queue joins", k["queue_joins"]),
        ("chats", k["chats"]),
        ("meals", k["meals"]),
        ("exits (by reason)", ", ".join(f"{r} {n}" for r, n in k["exits"].items()) or "0"),
        ("arrivals", k["arrivals"]),
        ("perturbations", ", ".join(f"{p} {n}" for p, n in k["perturbation_kinds"].items()) or "0"),
        ("narration lines", k["narrations"]),
        ("reward mean / std per agent-tick", f"{k['reward']['mean']:.4f} / {k['reward']['std']:.4f}"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    money = k["money"]
    for flow in ("wages", "rent", "purchases", "fees", "restock"):
        table.add_row(f"money: {flow}", f"{money[flow]:.2f}")
    table.add_row(
        "wallets min / mean / max",
        f"{money['wallet_min']:.2f} / {money['wallet_mean']:.2f} / {money['wallet_max']:.2f}",
    )
    console.print(table)
    console.print(f"state hash {result['state_hash']}")

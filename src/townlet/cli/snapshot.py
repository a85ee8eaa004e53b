"""``townlet snapshot save|inspect|validate|migrate``: write, describe, check and migrate snapshot files."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from townlet.config.loader import load_config

EXAMPLES = """examples:
  townlet snapshot save town.snap --ticks 2000        # run the default town 2 days headless, then save
  townlet snapshot inspect town.snap                  # identity block, tick, applied migrations
  townlet snapshot validate town.snap                 # checksum + a full trial load (exit 1 if bad)
  townlet snapshot migrate town.snap new.yaml --out town_new.snap
  townlet run --resume town.snap --ticks 1000 --json  # continue it
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``snapshot`` subcommand group."""
    from townlet.cli.main import add_config_arguments

    p = sub.add_parser("snapshot", help="save, inspect, validate or migrate snapshots", formatter_class=formatter,
                       description="Snapshots hold the whole town state plus an identity block (see "
                                   "docs/snapshots.md).", epilog=EXAMPLES)
    ops = p.add_subparsers(dest="op", metavar="OP", required=True)
    save = ops.add_parser("save", help="run a headless town N ticks and snapshot it", formatter_class=formatter)
    save.add_argument("path", metavar="PATH")
    add_config_arguments(save)
    save.add_argument("--ticks", type=int, default=0, metavar="N", help="ticks to run before saving (default 0)")
    save.add_argument("--seed", type=int, default=None, metavar="S")
    save.set_defaults(handler=save_command)
    inspect = ops.add_parser("inspect", help="show a snapshot's identity and migrations", formatter_class=formatter)
    inspect.add_argument("path", metavar="PATH")
    inspect.add_argument("--json", action="store_true", help="one JSON object on stdout")
    inspect.set_defaults(handler=inspect_command)
    validate = ops.add_parser("validate", help="verify the checksum and load it (exit 1 when bad)",
                              formatter_class=formatter)
    validate.add_argument("path", metavar="PATH")
    validate.set_defaults(handler=validate_command)
    migrate = ops.add_parser("migrate", help="load under another config via registered migrations and re-save",
                             formatter_class=formatter)
    migrate.add_argument("path", metavar="PATH")
    add_config_arguments(migrate)
    migrate.add_argument("--out", required=True, metavar="OUT", help="where to write the migrated snapshot")
    migrate.set_defaults(handler=migrate_command)


def _fail(message: str) -> int:
    print(f"townlet: error: {message}", file=sys.stderr)
    return 1


def save_command(args: argparse.Namespace) -> int:
    """Run ``--ticks`` ticks of the configured town and write a snapshot."""
    from townlet.sim import snapshot
    from townlet.sim.simulation import Simulation

    sim = Simulation(load_config(args.config, args.overrides), seed=args.seed)
    sim.run(args.ticks)
    path = snapshot.write(sim, args.path)
    print(f"saved tick {sim.tick} to {path} (state hash {sim.state_hash()})")
    return 0


def inspect_command(args: argparse.Namespace) -> int:
    """Print the identity block, file paths and applied migrations."""
    from townlet.sim import snapshot

    try:
        snap = snapshot.read(args.path)
    except snapshot.SnapshotError as exc:
        return _fail(str(exc))
    info = {"path": str(snap.path), "identity": snap.identity, "migrations": snap.header.get("migrations", []),
            "source": snap.header.get("source"), "affordances_path": snap.header.get("affordances_path"),
            "map_path": snap.header.get("map_path"), "bytes": len(snap.payload)}
    if args.json:
        sys.stdout.write(json.dumps(info) + "\n")
        return 0
    table = Table(title=f"snapshot {snap.path}")
    table.add_column("field")
    table.add_column("value")
    for key, value in snap.identity.items():
        table.add_row(key, str(value))
    table.add_row("migrations", ", ".join(f"{m['name']} ({m['from']}->{m['to']})" for m in info["migrations"])
                  or "none")
    Console().print(table)
    return 0


def validate_command(args: argparse.Namespace) -> int:
    """Checksum, decode and trial-load the snapshot; compare the recomputed state hash with the recorded one."""
    from townlet.sim import snapshot

    try:
        sim = snapshot.load(args.path)
    except snapshot.SnapshotError as exc:
        return _fail(str(exc))
    recorded = snapshot.read(args.path).identity["state_hash"]
    if sim.state_hash() != recorded:
        return _fail(f"{args.path}: state hash {sim.state_hash()} differs from the recorded {recorded}")
    print(f"{args.path}: valid (tick {sim.tick}, state hash {recorded})")
    return 0


def migrate_command(args: argparse.Namespace) -> int:
    """Load under CONFIG through the registered migrations and write the result to ``--out``."""
    from townlet.sim import snapshot

    try:
        sim = snapshot.load(args.path, load_config(args.config, args.overrides))
    except snapshot.SnapshotError as exc:
        return _fail(str(exc))
    snapshot.write(sim, args.out)
    steps = ", ".join(m["name"] for m in sim.applied_migrations) or "none needed"
    print(f"migrated {args.path} -> {args.out} (migrations: {steps})")
    return 0

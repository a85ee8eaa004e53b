"""``townlet snapshot``: write, describe, check, migrate, vouch for and convert snapshot files; their signing keys.

Snapshots are signed (HMAC-SHA256) with the key set beside the console keys (``console.state_dir``, or
``--state-dir``); a file signed with another key set, unsigned or altered is refused in one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from townlet.cli.main import add_config_arguments, add_config_options
from townlet.config.loader import load_config

EXAMPLES = """examples:
  townlet snapshot save town.snap --ticks 2000        # run the default town 2 days headless, then save
  townlet snapshot inspect town.snap                  # identity block, tick, applied migrations, signing key
  townlet snapshot validate town.snap                 # signature + a full trial load (exit 1 if bad)
  townlet snapshot migrate town.snap new.yaml --out town_new.snap
  townlet snapshot migrate town.snap --set features.relationships=C1 --out c1.snap   # the shipped example
  townlet snapshot migrations new.yaml                # the declarative migrations new.yaml sees, checked
  townlet snapshot trust other-machine.snap           # you vouch for it: re-sign it with this machine's key
  townlet snapshot key rotate                         # a new signing key; older snapshots still load
  townlet run --resume town.snap --ticks 1000 --json  # continue it
"""
CONVERT_HELP = """Rewrite a version 1 snapshot (a pickled state) in the current signed format.

ONLY use this on files whose origin you trust: a version 1 file is a Python pickle, and reading one can run
code chosen by whoever wrote it. Run it offline, by hand, never on files that arrived over a network or
from people you do not trust. The converter admits only the classes a real version 1 state holds, and the
result must pass every check of the new format, but that narrows the risk; it does not remove it."""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``snapshot`` subcommand group."""
    p = sub.add_parser(
        "snapshot",
        help="save, inspect, validate, migrate, trust or convert snapshots",
        formatter_class=formatter,
        description=__doc__ + "\nSee docs/snapshots.md.",
        epilog=EXAMPLES,
    )
    ops = p.add_subparsers(dest="op", metavar="OP", required=True)

    def op(
        name: str, text: str, handler: Any, positional_config: bool = False, description: str | None = None
    ) -> argparse.ArgumentParser:
        q = ops.add_parser(name, help=text, description=description or text, formatter_class=formatter)
        if positional_config:
            add_config_arguments(q)
        else:
            add_config_options(q)
        q.add_argument(
            "--state-dir",
            default=None,
            metavar="DIR",
            help="where the snapshot signing keys live (default: console.state_dir, ~/.townlet)",
        )
        q.set_defaults(handler=handler)
        return q

    q = op("save", "run a headless town N ticks and snapshot it", save_command, positional_config=True)
    q.add_argument("path", metavar="PATH")
    q.add_argument("--ticks", type=int, default=0, metavar="N", help="ticks to run before saving (default 0)")
    q.add_argument("--seed", type=int, default=None, metavar="S")
    q = op("inspect", "show a snapshot's identity, migrations and signing key", inspect_command)
    q.add_argument("path", metavar="PATH")
    q.add_argument("--json", action="store_true", help="one JSON object on stdout")
    q = op("validate", "verify the signature and load it (exit 1 when bad)", validate_command)
    q.add_argument("path", metavar="PATH")
    q = op(
        "migrate",
        "load under another config via registered migrations and re-save",
        migrate_command,
        positional_config=True,
    )
    q.add_argument("path", metavar="PATH")
    q.add_argument("--out", required=True, metavar="OUT", help="where to write the migrated snapshot")
    q = op(
        "migrations",
        "list and check the declarative migrations a config sees (shipped, its directory, its own)",
        migrations_command,
        positional_config=True,
    )
    q.add_argument("--json", action="store_true", help="one JSON object per migration on stdout")
    q = op(
        "trust", "vouch for a snapshot from elsewhere: check its format and re-sign it with this key set", trust_command
    )
    q.add_argument("path", metavar="PATH")
    q.add_argument("--out", default=None, metavar="OUT", help="write the re-signed copy here (default: in place)")
    q = op(
        "convert-v1",
        "convert a TRUSTED version 1 (pickle) snapshot to the current format",
        convert_command,
        description=CONVERT_HELP,
    )
    q.add_argument("path", metavar="PATH")
    q.add_argument("--out", required=True, metavar="OUT", help="where to write the converted snapshot")
    q = op("key", "the snapshot signing keys: list, rotate, retire, export, import", key_command)
    q.add_argument("action", choices=("list", "rotate", "retire", "export", "import"))
    q.add_argument(
        "arg",
        nargs="?",
        default=None,
        metavar="KID|FILE",
        help="retire/export: a key id; import: a file written by export (- for stdin)",
    )
    q.add_argument("--retire-old", action="store_true", help="rotate: also drop every older key")


def _fail(message: str, code: int = 1) -> int:
    print(f"townlet: error: {message}", file=sys.stderr)
    return code


def _overrides(args: argparse.Namespace) -> list[str]:
    extra = [f"console.state_dir={json.dumps(args.state_dir)}"] if args.state_dir else []
    return [*args.overrides, *extra]


def snapshot_keys(args: argparse.Namespace) -> Any:
    """The snapshot key set named by ``--config``/``--set``/``--state-dir``."""
    from townlet.sim.signing import SnapshotKeys

    return SnapshotKeys.from_config(load_config(args.config, _overrides(args)).config)


def save_command(args: argparse.Namespace) -> int:
    """Run ``--ticks`` ticks of the configured town and write a signed snapshot."""
    from townlet.sim import snapshot
    from townlet.sim.simulation import Simulation

    sim = Simulation(load_config(args.config, _overrides(args)), seed=args.seed)
    sim.run(args.ticks)
    path = snapshot.write(sim, args.path)
    print(f"saved tick {sim.tick} to {path} (state hash {sim.state_hash()})")
    return 0


def inspect_command(args: argparse.Namespace) -> int:
    """Print the identity block, file paths, applied migrations and the signing key."""
    from townlet.sim import snapshot

    try:
        snap = snapshot.read(args.path, snapshot_keys(args))
    except snapshot.SnapshotError as exc:
        return _fail(str(exc))
    info = {
        "path": str(snap.path),
        "identity": snap.identity,
        "migrations": snap.header["migrations"],
        "source": snap.header["source"],
        "affordances_path": snap.header["affordances_path"],
        "map_path": snap.header["map_path"],
        "bytes": snap.size,
        "signed_by": snap.signed_by,
        "sections": snap.header["sections"],
    }
    if args.json:
        sys.stdout.write(json.dumps(info) + "\n")
        return 0
    table = Table(title=f"snapshot {snap.path}")
    table.add_column("field")
    table.add_column("value")
    for key, value in snap.identity.items():
        table.add_row(key, str(value))
    table.add_row(
        "migrations",
        ", ".join(f"{m.get('name')} ({m.get('from')}->{m.get('to')})" for m in info["migrations"]) or "none",
    )
    table.add_row("signed by", str(snap.signed_by))
    Console().print(table)
    return 0


def validate_command(args: argparse.Namespace) -> int:
    """Signature, decode and trial load; compare the recomputed state hash with the recorded one."""
    from townlet.sim import snapshot

    keys = snapshot_keys(args)
    try:
        recorded = snapshot.read(args.path, keys).identity["state_hash"]
        sim = snapshot.load(args.path, keys=keys)
    except snapshot.SnapshotError as exc:
        return _fail(str(exc))
    if sim.state_hash() != recorded:
        return _fail(f"{args.path}: state hash {sim.state_hash()} differs from the recorded {recorded}")
    print(f"{args.path}: valid (tick {sim.tick}, state hash {recorded})")
    return 0


def migrate_command(args: argparse.Namespace) -> int:
    """Load under CONFIG through the registered migrations and write the result to ``--out``."""
    from townlet.sim import snapshot

    loaded = load_config(args.config, _overrides(args))
    try:
        sim = snapshot.load(args.path, loaded)
    except snapshot.SnapshotError as exc:
        return _fail(str(exc))
    snapshot.write(sim, args.out)
    steps = ", ".join(m["name"] for m in sim.applied_migrations) or "none needed"
    print(f"migrated {args.path} -> {args.out} (migrations: {steps})")
    return 0


def migrations_command(args: argparse.Namespace) -> int:
    """List the declarative migrations CONFIG sees, each checked (exit 1 naming the first bad one)."""
    from townlet.sim.migrations import MigrationError, declared

    try:
        found = declared(load_config(args.config, _overrides(args)))
    except MigrationError as exc:
        return _fail(str(exc))
    for item in found:
        spec = item.spec
        row = {
            "name": spec.name,
            "origin": item.origin,
            "from": spec.source,
            "to": spec.target,
            "steps": [step.kind for step in spec.steps],
            "description": spec.description,
        }
        if args.json:
            sys.stdout.write(json.dumps(row) + "\n")
        else:
            change = ", ".join(f"{k} {spec.source.get(k, '*')} -> {v}" for k, v in spec.target.items())
            print(f"{spec.name}: {change} ({len(spec.steps)} step(s); {item.origin})")
    if not found and not args.json:
        print("no declarative migrations")
    return 0


def trust_command(args: argparse.Namespace) -> int:
    """Check a snapshot's format in full, ignoring its signature, and sign it with this key set."""
    from townlet.sim import snapshot

    keys = snapshot_keys(args)
    try:
        snap = snapshot.resign(args.path, keys, args.out)
    except snapshot.SnapshotError as exc:
        return _fail(str(exc))
    ident = snap.identity
    print(
        f"trusted {args.path} -> {args.out or args.path}: tick {ident['tick']}, config {ident['config_id']}, "
        f"state hash {ident['state_hash']}; now signed with {keys.keys.path}"
    )
    return 0


def convert_command(args: argparse.Namespace) -> int:
    """Rewrite a trusted version 1 file in the current format."""
    from townlet.sim.snapshot import SnapshotError
    from townlet.sim.snapshot_v1 import convert_v1

    try:
        ident = convert_v1(args.path, args.out, snapshot_keys(args))
    except SnapshotError as exc:
        return _fail(str(exc))
    print(
        f"converted {args.path} -> {args.out} (tick {ident.get('tick')}); check it: townlet snapshot validate "
        f"{args.out}"
    )
    return 0


def key_command(args: argparse.Namespace) -> int:
    """List, rotate, retire, export or import snapshot signing keys."""
    from townlet.keys import StateFileError

    keys = snapshot_keys(args).keys
    try:
        return _key_action(args, keys)
    except StateFileError as exc:
        return _fail(f"the snapshot key set {exc}", 2)


def _key_action(args: argparse.Namespace, keys: Any) -> int:
    action = args.action
    if action == "list":
        active, ids = keys.ids()
        print(f"snapshot signing keys in {keys.path}: {', '.join(ids) or 'none'} (active: {active or 'none'})")
        return 0
    if action == "rotate":
        print(keys.rotate(retire_others=args.retire_old))
        print(
            "new snapshots are signed with this key" + ("; older keys are retired" if args.retire_old else ""),
            file=sys.stderr,
        )
        return 0
    if args.arg is None:
        return _fail(f"snapshot key {action} needs {'a FILE' if action == 'import' else 'a key id'}", 2)
    if action == "retire":
        try:
            keys.retire(args.arg)
        except KeyError:
            return _fail(f"no key {args.arg!r}", 2)
        except ValueError as exc:
            return _fail(str(exc), 2)
        print(f"retired {args.arg}: snapshots it signed no longer load", file=sys.stderr)
        return 0
    if action == "export":
        try:
            print(json.dumps(keys.export(args.arg)))
        except KeyError:
            return _fail(f"no key {args.arg!r}", 2)
        print("this is a secret: anyone holding it can sign snapshots this server will load", file=sys.stderr)
        return 0
    try:
        text = sys.stdin.read() if args.arg == "-" else Path(args.arg).read_text(encoding="utf-8")
        entry = json.loads(text)
        keys.add(str(entry["kid"]), str(entry["secret"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return _fail(f"cannot import {args.arg}: {exc}", 2)
    print(f"imported {entry['kid']}: snapshots it signed now load here", file=sys.stderr)
    return 0

"""``townlet config validate|show``: check a config (with its map and affordances) or print it resolved."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from townlet.config.loader import load_config

EXAMPLES = """examples:
  townlet config validate                        # the shipped default
  townlet config validate my_town.yaml --set population.agents=20
  townlet config show --json | jq .features
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``config`` subcommand group."""
    from townlet.cli.main import add_config_arguments

    p = sub.add_parser(
        "config",
        help="validate or show a configuration",
        formatter_class=formatter,
        description="Validate a config (including its town map and affordance manifest) or "
        "print it with every default filled in.",
        epilog=EXAMPLES,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = actions.add_parser(
        "validate",
        help="check a config, its map and affordances; exit 2 on error",
        formatter_class=formatter,
        epilog=EXAMPLES,
    )
    add_config_arguments(v)
    v.set_defaults(handler=validate_command)
    s = actions.add_parser(
        "show", help="print the resolved config (YAML, or --json)", formatter_class=formatter, epilog=EXAMPLES
    )
    add_config_arguments(s)
    s.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    s.set_defaults(handler=show_command)


def validate_command(args: argparse.Namespace) -> int:
    """Load everything a run would load (config, map, affordances, hooks) and report."""
    from townlet.sim.simulation import Simulation

    loaded = load_config(args.config, args.overrides)
    sim = Simulation(loaded)
    print(
        f"ok: {loaded.source} (config_id {loaded.config_id}; map {sim.world.grid.width}x{sim.world.grid.height}, "
        f"{sim.world.objects.count} objects, {len(sim.world.manifest)} affordances, "
        f"{len(sim.world.employment)} job positions)"
    )
    for problem in sim.invariant_problems:
        print(f"warning: economy invariant: {problem}")
    return 0


def show_command(args: argparse.Namespace) -> int:
    """Print the resolved config with its identity."""
    loaded = load_config(args.config, args.overrides)
    body = {
        "config_id": loaded.config_id,
        "source": str(loaded.source),
        "map_path": str(loaded.map_path),
        "affordances_path": str(loaded.affordances_path),
        **loaded.config.model_dump(mode="json"),
    }
    print(
        json.dumps(body, indent=2) if args.json else yaml.safe_dump(body, sort_keys=False),
        end="" if not args.json else "\n",
    )
    return 0

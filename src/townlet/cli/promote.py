"""``townlet promote register|promote|rollback|pin|unpin|list|log|shadow``: the policy registry and releases.

The registry is SQLite (``promotion.registry``, default ``~/.townlet/registry.sqlite``; ``--registry`` overrides).
``shadow`` runs a candidate in a shadow town beside the live release until it is promoted (two passing
windows and the evaluation suite) or turned down (the release is then pinned). See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from townlet.cli.main import add_config_options

LOG = logging.getLogger("townlet.promotion")

EXAMPLES = """examples:
  townlet promote register runs/hybrid/final.pt                 # a candidate (it must fit the town)
  townlet promote promote default --reason "the shipped policy"  # then: townlet serve runs it
  townlet promote shadow runs/hybrid/final.pt                   # shadow it; promote or pin by the rules
  townlet promote list                                          # policies, the release, a pin
  townlet promote log --json                                    # every decision with its reason
  townlet promote promote 3fa9c2 --reason "hand-checked on stage M3"
  townlet promote rollback --reason "late arrivals after the release"
  townlet promote unpin --reason "looked into the lateness spike"
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``promote`` subcommand group."""
    p = sub.add_parser(
        "promote",
        help="policy registry: register, shadow, promote, roll back, pin, list",
        formatter_class=formatter,
        description=__doc__,
        epilog=EXAMPLES,
    )
    inner = p.add_subparsers(dest="promote_command", metavar="ACTION")

    def action(name: str, text: str, handler: Any) -> argparse.ArgumentParser:
        q = inner.add_parser(name, help=text, description=text, formatter_class=formatter, epilog=EXAMPLES)
        add_config_options(q)
        q.add_argument("--registry", default=None, metavar="PATH", help="SQLite registry (default promotion.registry)")
        q.add_argument("--json", action="store_true", help="print JSON")
        q.set_defaults(handler=handler)
        return q

    q = action("register", "register a checkpoint (or scripted/random) as a candidate", register_command)
    q.add_argument(
        "policy",
        metavar="CHECKPOINT",
        help="a checkpoint file, default (the shipped policy), or "
        "scripted / random; a checkpoint must fit the town of --config/--set",
    )
    q.add_argument("--reason", default="registered by hand")
    q = action("promote", "make a registered policy the release by hand (refused while pinned)", promote_command)
    q.add_argument(
        "policy",
        metavar="REF",
        help="policy hash (or unique prefix), checkpoint path, or default; it must fit the town of --config/--set",
    )
    q.add_argument("--reason", required=True)
    q.add_argument("--force", action="store_true", help="promote even while pinned")
    q = action("rollback", "go back to the release before the current one", rollback_command)
    q.add_argument("--reason", required=True)
    q = action("pin", "hold the current release (refuse promotions)", pin_command)
    q.add_argument("--reason", required=True)
    q = action("unpin", "allow promotions again", unpin_command)
    q.add_argument("--reason", required=True)
    action("list", "registered policies, the release and any pin", list_command)
    action("log", "every decision, oldest first, with its reason", log_command)
    q = action(
        "shadow",
        "run a candidate in a shadow town beside the release until it is promoted or turned down",
        shadow_command,
    )
    q.add_argument("policy", metavar="CHECKPOINT", help="the candidate checkpoint (or scripted / random)")
    q.add_argument(
        "--windows",
        type=int,
        default=None,
        metavar="N",
        help="give up after N shadow windows (default promotion.windows_to_promote + 2)",
    )
    q.add_argument("--seed", type=int, default=None, metavar="S", help="run seed of both towns")
    p.set_defaults(handler=lambda args: _help(p))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _registry(args: argparse.Namespace) -> Any:
    from townlet.config.loader import load_config
    from townlet.training.registry import PolicyRegistry

    path = args.registry or load_config(args.config, args.overrides).config.promotion.registry
    return PolicyRegistry(path)


def _fail(message: str) -> int:
    print(f"townlet: error: {message}", file=sys.stderr)
    return 2


def _record(record: Any) -> dict[str, Any]:
    return {
        "policy_hash": record.policy_hash,
        "status": record.status,
        "path": record.path,
        "variant": record.variant,
        "config_id": record.config_id,
        "registered_at": record.registered_at,
    }


def _town(args: argparse.Namespace) -> Any:
    """The config of the town the registry's policies drive (a checkpoint must fit it)."""
    from townlet.config.loader import load_config

    return load_config(args.config, args.overrides)


def _policy_arg(ref: str) -> str:
    """``default`` is the shipped policy's file; anything else is passed on as given."""
    if ref == "default":
        from townlet.policy.shipped import default_path

        return str(default_path())
    return ref


def _run(args: argparse.Namespace, act: Any) -> int:
    from townlet.logs import configure_logging, log_event
    from townlet.policy.checkpoint import CheckpointError
    from townlet.training.registry import RegistryError

    town = _town(args)
    configure_logging(town.config.logging.format, town.config.logging.level)
    try:
        with _registry(args) as registry:
            out = act(registry)
            log_event(
                LOG,
                f"promotion.{args.promote_command}",
                None,
                policy=out.get("policy_hash"),
                reason=getattr(args, "reason", None),
                promotion_state=registry.state(),
            )
    except (RegistryError, CheckpointError) as exc:
        return _fail(str(exc))
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        print(out["message"])
    return 0


def register_command(args: argparse.Namespace) -> int:
    """Register a candidate."""

    def act(registry: Any) -> dict[str, Any]:
        record = registry.register(_policy_arg(args.policy), args.reason, town=_town(args))
        return {**_record(record), "message": f"registered {record.policy_hash} ({record.status})"}

    return _run(args, act)


def promote_command(args: argparse.Namespace) -> int:
    """Promote by hand."""

    def act(registry: Any) -> dict[str, Any]:
        ref = args.policy
        if ref == "default" or Path(ref).is_file():  # a checkpoint file is registered on the way
            ref = registry.register(
                _policy_arg(ref), f"registered to be promoted: {args.reason}", town=_town(args)
            ).policy_hash
        record = registry.promote(ref, args.reason, force=args.force, town=_town(args))
        return {**_record(record), "message": f"{record.policy_hash} is the release"}

    return _run(args, act)


def rollback_command(args: argparse.Namespace) -> int:
    """Roll back."""

    def act(registry: Any) -> dict[str, Any]:
        record = registry.rollback(args.reason)
        return {**_record(record), "message": f"rolled back: {record.policy_hash} is the release again"}

    return _run(args, act)


def pin_command(args: argparse.Namespace) -> int:
    """Pin the release."""

    def act(registry: Any) -> dict[str, Any]:
        registry.pin(args.reason)
        return {"pinned": args.reason, "message": f"release pinned: {args.reason}"}

    return _run(args, act)


def unpin_command(args: argparse.Namespace) -> int:
    """Unpin the release."""

    def act(registry: Any) -> dict[str, Any]:
        registry.unpin(args.reason)
        return {"pinned": None, "message": "release unpinned"}

    return _run(args, act)


def list_command(args: argparse.Namespace) -> int:
    """List policies, the release and the pin."""
    try:
        with _registry(args) as registry:
            policies = [_record(r) for r in registry.policies()]
            release = registry.release
            pin = registry.pinned
    except Exception as exc:  # noqa: BLE001 - a broken registry file is reported, not a traceback
        return _fail(f"registry: {exc}")
    out = {
        "release": release.policy_hash if release else None,
        "pinned": pin.reason if pin else None,
        "policies": policies,
    }
    if args.json:
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    table = Table(title=f"policies (release {out['release']}" + (f", PINNED: {out['pinned']})" if pin else ")"))
    for col in ("policy", "status", "variant", "config_id", "registered", "path"):
        table.add_column(col)
    for r in policies:
        table.add_row(r["policy_hash"], r["status"], r["variant"], r["config_id"], r["registered_at"], r["path"])
    Console().print(table)
    return 0


def log_command(args: argparse.Namespace) -> int:
    """Print the decision log."""
    with _registry(args) as registry:
        decisions = registry.decisions()
    rows = [
        {
            "id": d.id,
            "at": d.at,
            "tick": d.tick,
            "action": d.action,
            "policy": d.policy_hash,
            "previous": d.previous,
            "reason": d.reason,
        }
        for d in decisions
    ]
    if args.json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return 0
    for r in rows:
        tick = f" tick {r['tick']}" if r["tick"] is not None else ""
        prev = f" (was {r['previous']})" if r["previous"] else ""
        print(f"{r['at']}{tick} {r['action']} {r['policy']}{prev}: {r['reason']}")
    return 0


def shadow_command(args: argparse.Namespace) -> int:
    """Shadow a candidate until it is promoted or turned down; exit 1 when it is turned down."""
    from townlet.logs import configure_logging
    from townlet.policy.checkpoint import CheckpointError
    from townlet.training.promotion import Promotion
    from townlet.training.registry import RegistryError

    err = Console(stderr=True)
    town = _town(args)
    configure_logging(town.config.logging.format, town.config.logging.level)  # stability and promotion lines
    try:
        with _registry(args) as registry:
            promotion = Promotion(registry, args.config, args.overrides, seed=args.seed)
            record = promotion.propose(_policy_arg(args.policy))
            windows = args.windows or promotion.cfg.windows_to_promote + 2
            ticks = windows * promotion.loaded.config.stability.window_ticks
            if not args.json:
                err.print(
                    f"shadowing {record.policy_hash} beside release {promotion.release.policy_hash} for at "
                    f"most {windows} windows ({ticks} ticks)"
                )
            promotion.run(ticks, until_decided=True)
            status = promotion.status()
    except (RegistryError, CheckpointError) as exc:
        return _fail(str(exc))
    promoted = status["release"] == record.policy_hash
    status["candidate_hash"] = record.policy_hash
    status["promoted"] = promoted
    if args.json:
        sys.stdout.write(json.dumps(status) + "\n")
    else:
        for outcome in status["outcomes"]:
            print(f"{outcome['action']} {outcome['policy']}: {outcome['reason']}")
        if status["candidate"]:
            print(f"undecided after {windows} windows: {record.policy_hash} is still a candidate")
        print(f"release: {status['release']}" + (f" (pinned: {status['pinned']})" if status["pinned"] else ""))
    return 0 if promoted else 1

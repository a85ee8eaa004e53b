"""Package a trained checkpoint as Townlet's shipped default policy (``src/townlet/policy/default/``).

Copies the checkpoint without its training-only extras (optimiser, curriculum and best-window state: the
policy hash covers the network spec and weights only, so it does not change), refuses a file of 2 MB or more,
evaluates it beside the scripted routine and random on the fixed-seed suite, and writes ``scorecard.json``
with the policy hash, the exact command lines (how it was trained, this one, how to re-evaluate it) and the
three scorecards.

    python tools/ship_default_policy.py runs/recipe/final.pt --train-command "townlet train ..." [--days 3]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from townlet.files import write_atomic
from townlet.policy import shipped
from townlet.policy.checkpoint import load, save
from townlet.policy.compat import check_config
from townlet.training.evaluation import evaluate

MAX_BYTES = 2 * 1024 * 1024
KEEP_META = ("source", "stage", "update", "args", "bc", "window")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="the trained checkpoint")
    p.add_argument("--train-command", required=True, help="the exact command line that trained it")
    p.add_argument("--provenance", default="", help="where the checkpoint came from (a run directory, an issue)")
    p.add_argument("--days", type=float, default=None, help="in-sim days per scenario (default evaluation.days)")
    args = p.parse_args(argv)

    checkpoint = load(args.checkpoint)
    from townlet.config.loader import load_config

    check_config(checkpoint, load_config())  # it must drive the shipped town as it is
    checkpoint.meta = {k: v for k, v in checkpoint.meta.items() if k in KEEP_META}
    shipped.DEFAULT_DIR.mkdir(parents=True, exist_ok=True)
    save(checkpoint, shipped.CHECKPOINT_FILE)
    size = shipped.CHECKPOINT_FILE.stat().st_size
    if size >= MAX_BYTES:
        shipped.CHECKPOINT_FILE.unlink()
        print(f"error: {size} bytes is not under 2 MB", file=sys.stderr)
        return 1
    cards = {}
    for name, policy in (("default", checkpoint), ("scripted", "scripted"), ("random", "random")):
        print(f"evaluating {name} ...", file=sys.stderr, flush=True)
        result = evaluate(policy, days=args.days)
        cards[name] = result.scorecard
        days, seeds = result.days, sorted({s["seed"] for s in result.scenarios})
    evaluate_cmd = "townlet evaluate --policy {} --json" + (f" --days {args.days:g}" if args.days else "")
    card = {
        "policy_hash": checkpoint.policy_hash,
        "variant": checkpoint.variant,
        "config_id": checkpoint.config_id,
        "step": checkpoint.step,
        "bytes": size,
        "provenance": args.provenance,
        "commands": {
            "train": args.train_command,
            "ship": "python tools/ship_default_policy.py " + shlex.join(sys.argv[1:]),
            "evaluate": {name: evaluate_cmd.format(name) for name in cards},
        },
        "evaluation": {"seeds": seeds, "days": days, "greedy": True},
        "scorecards": cards,
    }
    write_atomic(shipped.SCORECARD_FILE, (json.dumps(card, indent=2) + "\n").encode())
    print(
        json.dumps(
            {
                "policy_hash": checkpoint.policy_hash,
                "bytes": size,
                "scorecards": {
                    k: {m: v[m] for m in ("attendance", "self_sufficiency", "need_ok_share", "collapses")}
                    for k, v in cards.items()
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

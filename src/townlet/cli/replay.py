"""``townlet replay``: load a snapshot, re-apply the recorded console inputs, and check the state hash.

Recorded inputs are the console audit log (JSONL): every command that was applied (``ok`` true, not a
duplicate) is re-run at the start of the tick it was applied at, by the same principal and role. The
result is compared with a later snapshot of the recorded run (``--against``, by default the autosave
``N`` ticks later in the same directory) or an explicit ``--expect`` hash.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  townlet replay snaps/town-000000002000.snap --ticks 1000 --inputs ~/.townlet/audit.jsonl
  townlet replay a.snap --against b.snap --inputs audit.jsonl --json
  townlet replay a.snap --ticks 500 --expect 9f84ce950cf09fee9b2ca8810dc9353d
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``replay`` subcommand."""
    p = sub.add_parser("replay", help="re-run a snapshot with the recorded console inputs and compare hashes",
                       formatter_class=formatter, description=__doc__, epilog=EXAMPLES)
    p.add_argument("snapshot", metavar="SNAPSHOT")
    p.add_argument("--ticks", type=int, default=None, metavar="N",
                   help="ticks to re-run (default: up to the --against snapshot's tick)")
    p.add_argument("--inputs", default=None, metavar="AUDIT.jsonl", help="the console audit log of the recorded run")
    p.add_argument("--against", default=None, metavar="SNAPSHOT", help="a later snapshot of the recorded run")
    p.add_argument("--expect", default=None, metavar="HASH", help="the recorded run's state hash after N ticks")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(handler=replay_command)


def read_inputs(path: str | Path | None) -> dict[int, list[dict[str, Any]]]:
    """Applied commands of an audit log, grouped by the tick they were applied at (file order kept)."""
    by_tick: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if path is None:
        return by_tick
    for line in Path(path).expanduser().read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("ok") is True and not rec.get("duplicate") and rec.get("cmd") and rec.get("tick") is not None:
            by_tick[int(rec["tick"])].append(rec)
    return by_tick


def replay(snapshot_path: str | Path, ticks: int, inputs: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Load ``snapshot_path``, run ``ticks`` ticks re-applying ``inputs``; return the tick, hash and counts."""
    from townlet.console.auth import Principal
    from townlet.console.registry import REGISTRY, Context
    from townlet.console.service import ConsoleService
    from townlet.sim import snapshot

    sim = snapshot.load(snapshot_path)
    service = ConsoleService(sim, authority=None)  # type: ignore[arg-type]  # commands are not re-authorised
    applied, failed = 0, []
    start = sim.tick
    for _ in range(ticks):
        for rec in inputs.get(sim.tick, ()):
            command = REGISTRY.get(rec["cmd"])
            if command is None:
                failed.append(f"tick {sim.tick}: unknown command {rec['cmd']}")
                continue
            who = Principal(rec.get("principal") or "replay", rec.get("role") or "admin", "replay", 1 << 62)
            try:
                command.handler(Context(sim, who, service), command.parse(rec.get("args")))
                applied += 1
            except Exception as exc:  # noqa: BLE001 - reported: the replay diverges from the record
                failed.append(f"tick {sim.tick}: {rec['cmd']} failed ({exc})")
        sim.step()
    return {"from_tick": start, "to_tick": sim.tick, "inputs_applied": applied, "input_failures": failed,
            "state_hash": sim.state_hash()}


def _default_against(path: Path, ticks: int | None) -> Path | None:
    from townlet.sim import snapshot
    from townlet.sim.autosave import snapshot_name

    if ticks is None:
        return None
    candidate = path.parent / snapshot_name(snapshot.read(path).identity["tick"] + ticks)
    return candidate if candidate.exists() else None


def replay_command(args: argparse.Namespace) -> int:
    """Replay and report; exit 0 when the hash matches, 1 when it differs, 2 on bad input."""
    from townlet.sim import snapshot

    path = Path(args.snapshot)
    try:
        start = snapshot.read(path).identity["tick"]
        against = Path(args.against) if args.against else _default_against(path, args.ticks)
        expected = args.expect
        if against is not None:
            later = snapshot.read(against).identity
            expected = expected or later["state_hash"]
            ticks = args.ticks if args.ticks is not None else later["tick"] - start
            if later["tick"] != start + ticks:
                print(f"townlet: error: {against} is at tick {later['tick']}, not {start + ticks}", file=sys.stderr)
                return 2
        else:
            ticks = args.ticks
        if ticks is None or ticks < 0:
            print("townlet: error: give --ticks N (or --against a later snapshot)", file=sys.stderr)
            return 2
        result = replay(path, ticks, read_inputs(args.inputs))
    except (snapshot.SnapshotError, OSError, ValueError) as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    result["expected"] = expected
    result["match"] = None if expected is None else result["state_hash"] == expected
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        verdict = {True: "MATCH", False: "MISMATCH", None: "no recorded hash to compare"}[result["match"]]
        print(f"replayed ticks {result['from_tick']}..{result['to_tick']} with {result['inputs_applied']} "
              f"console input(s): state hash {result['state_hash']} - {verdict}")
        for problem in result["input_failures"]:
            print(f"  {problem}")
    return 1 if result["match"] is False else 0

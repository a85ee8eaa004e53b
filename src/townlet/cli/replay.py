"""``townlet replay``: load a snapshot, re-apply the recorded console inputs, and check the state hash.

Recorded inputs are the console audit log (JSONL): every command that was applied (``ok`` true, not a
duplicate) is re-run at the start of the tick it was applied at, by the same principal and role. The
result is compared with a later snapshot of the recorded run (``--against``, by default the autosave
``N`` ticks later in the same directory) or an explicit ``--expect`` hash. A rotated audit log is read
oldest first: ``--inputs audit.jsonl.1 --inputs audit.jsonl``. Snapshots must verify against the key set
of ``--state-dir`` (default: ``console.state_dir``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from townlet.cli.main import add_config_options
from townlet.cli.policy_arg import add_policy_argument

if TYPE_CHECKING:
    from townlet.world.state import World

EXAMPLES = """examples:
  townlet replay snaps/town-000000002000.snap --ticks 1000 --inputs ~/.townlet/audit.jsonl
  townlet replay a.snap --against b.snap --inputs audit.jsonl --json
  townlet replay a.snap --ticks 500 --expect 9f84ce950cf09fee9b2ca8810dc9353d
  townlet replay snaps/town-000000002000.snap --ticks 1000 --inputs audit.jsonl.1 --inputs audit.jsonl \
      --state-dir /var/lib/townlet/state
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``replay`` subcommand."""
    p = sub.add_parser(
        "replay",
        help="re-run a snapshot with the recorded console inputs and compare hashes",
        formatter_class=formatter,
        description=__doc__,
        epilog=EXAMPLES,
    )
    p.add_argument("snapshot", metavar="SNAPSHOT")
    p.add_argument(
        "--ticks",
        type=int,
        default=None,
        metavar="N",
        help="ticks to re-run (default: up to the --against snapshot's tick)",
    )
    p.add_argument(
        "--inputs",
        action="append",
        default=[],
        metavar="AUDIT.jsonl",
        help="the console audit log of the recorded run (repeat for rotated files, oldest first)",
    )
    p.add_argument("--against", default=None, metavar="SNAPSHOT", help="a later snapshot of the recorded run")
    p.add_argument("--expect", default=None, metavar="HASH", help="the recorded run's state hash after N ticks")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    add_config_options(p)
    p.add_argument(
        "--state-dir",
        default=None,
        metavar="DIR",
        help="where the snapshot signing keys live (default: console.state_dir, ~/.townlet)",
    )
    add_policy_argument(p, more="default: the policy the snapshot records")
    p.set_defaults(handler=replay_command)


def read_inputs(paths: str | Path | list[str] | None) -> dict[int, list[dict[str, Any]]]:
    """Applied commands of audit logs (oldest file first), grouped by the tick they were applied at."""
    by_tick: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if paths is None:
        return by_tick
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        for line in Path(path).expanduser().read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("ok") is True and not rec.get("duplicate") and rec.get("cmd") and rec.get("tick") is not None:
                by_tick[int(rec["tick"])].append(rec)
    return by_tick


def replay(
    snapshot_path: str | Path,
    ticks: int,
    inputs: dict[int, list[dict[str, Any]]],
    keys: Any = None,
    policy: Any = None,
    registry: Any = None,
) -> dict[str, Any]:
    """Load ``snapshot_path``, run ``ticks`` ticks re-applying ``inputs``; return the tick, hash and counts.

    ``keys`` is the snapshot key set to verify it with (default: the shipped config's). The snapshot's policy
    drives (or ``policy``, a :class:`~townlet.training.policies.PolicyChoice`); recorded ``policy`` commands
    swap, promote and roll back in an in-memory copy of ``registry``, never in the file.
    """
    from townlet.console.auth import Principal
    from townlet.console.catalog import REGISTRY
    from townlet.console.registry import Context
    from townlet.console.service import ConsoleService
    from townlet.sim import snapshot
    from townlet.training.live import LivePolicies
    from townlet.training.policies import reinstate

    sim = snapshot.load(snapshot_path, keys=keys)
    driving = reinstate(sim, policy, registry)
    service = ConsoleService(sim, authority=None)  # recorded commands are not re-authorised
    service.policies = LivePolicies(sim, registry.scratch_copy() if registry is not None else None, None, monitor=False)
    applied, failed = 0, []
    start = sim.tick

    def apply(rec: dict[str, Any], _world: World) -> None:
        nonlocal applied
        command = REGISTRY.get(rec["cmd"])
        if command is None:
            failed.append(f"tick {sim.tick}: unknown command {rec['cmd']}")
            return
        who = Principal(rec.get("principal") or "replay", rec.get("role") or "admin", "replay", 1 << 62)
        try:
            command.handler(Context(sim, who, service), command.parse(rec.get("args")))
            applied += 1
        except Exception as exc:  # noqa: BLE001 - reported: the replay diverges from the record
            failed.append(f"tick {sim.tick}: {rec['cmd']} failed ({exc})")

    for _ in range(ticks):
        for rec in inputs.get(sim.tick, ()):  # queued like the live console's: applied in the tick's commands phase
            sim.enqueue(partial(apply, rec))
        sim.step()
    return {
        "from_tick": start,
        "to_tick": sim.tick,
        "inputs_applied": applied,
        "input_failures": failed,
        "policy": driving.to_dict(),
        "state_hash": sim.state_hash(),
    }


def _default_against(path: Path, ticks: int | None, keys: Any) -> Path | None:
    from townlet.sim import snapshot
    from townlet.sim.autosave import snapshot_name

    if ticks is None:
        return None
    candidate = path.parent / snapshot_name(snapshot.read(path, keys).identity["tick"] + ticks)
    return candidate if candidate.exists() else None


def replay_command(args: argparse.Namespace) -> int:
    """Replay and report; exit 0 when the hash matches, 1 when it differs, 2 on bad input."""
    from townlet.cli.policy_arg import choose, policy_errors, registry_of
    from townlet.cli.snapshot import snapshot_keys
    from townlet.sim import snapshot

    path = Path(args.snapshot)
    keys = snapshot_keys(args)
    bad_input: tuple[type[BaseException], ...] = (snapshot.SnapshotError, OSError, ValueError, *policy_errors())
    try:
        start = snapshot.read(path, keys).identity["tick"]
        against = Path(args.against) if args.against else _default_against(path, args.ticks, keys)
        expected = args.expect
        if against is not None:
            later = snapshot.read(against, keys).identity
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
        snap = snapshot.read(path, keys)
        loaded = snap.loaded_config()
        override = choose(args.policy, loaded, args) if args.policy else None
        result = replay(path, ticks, read_inputs(args.inputs), keys, override, registry_of(args, loaded))
    except bad_input as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    result["expected"] = expected
    result["match"] = None if expected is None else result["state_hash"] == expected
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        verdict = {True: "MATCH", False: "MISMATCH", None: "no recorded hash to compare"}[result["match"]]
        print(
            f"replayed ticks {result['from_tick']}..{result['to_tick']} with {result['inputs_applied']} "
            f"console input(s): state hash {result['state_hash']} - {verdict}"
        )
        for problem in result["input_failures"]:
            print(f"  {problem}")
    return 1 if result["match"] is False else 0

"""``townlet telemetry schema|replay``: print the published JSON Schema; rebuild the state at a tick."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

EXAMPLES = """examples:
  townlet telemetry schema > telemetry-v1.json
  townlet run --ticks 2000 --telemetry town.jsonl
  townlet telemetry replay town.jsonl --tick 1500 | jq .state.agents.agent_0.needs
  townlet telemetry replay town.jsonl            # the last tick in the file
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``telemetry`` subcommand group."""
    p = sub.add_parser(
        "telemetry",
        help="telemetry schema and stream replay",
        formatter_class=formatter,
        description="Work with telemetry streams (JSONL: a snapshot line, then diff and event lines).",
        epilog=EXAMPLES,
    )
    inner = p.add_subparsers(dest="telemetry_command", metavar="ACTION")
    schema = inner.add_parser(
        "schema", help="print the JSON Schema every stream line validates against", formatter_class=formatter,
        description="Print the published telemetry JSON Schema (draft 2020-12).", epilog=EXAMPLES,
    )
    schema.set_defaults(handler=schema_command)
    replay = inner.add_parser(
        "replay", help="rebuild the full state at a tick from a stream file", formatter_class=formatter,
        description="Apply the stream's diffs to its snapshot and print the state after tick T as one "
        "snapshot message (JSON). Exit code 2 when the file does not reach that tick.",
        epilog=EXAMPLES,
    )
    replay.add_argument("file", metavar="FILE", help="a telemetry JSONL file (townlet run --telemetry FILE)")
    replay.add_argument("--tick", type=int, default=None, metavar="T", help="tick to rebuild (default: the last)")
    replay.add_argument("--indent", action="store_true", help="pretty-print")
    replay.set_defaults(handler=replay_command)
    p.set_defaults(handler=lambda args: _help(p))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def schema_command(args: argparse.Namespace) -> int:
    """Print the published schema file."""
    from townlet.telemetry.schema import SCHEMA_FILE

    sys.stdout.write(SCHEMA_FILE.read_text(encoding="utf-8"))
    return 0


def replay_command(args: argparse.Namespace) -> int:
    """Rebuild and print the state at ``--tick``."""
    from townlet.telemetry.replay import StreamError, read_messages, state_at

    try:
        message = state_at(read_messages(args.file), args.tick)
    except StreamError as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    option = orjson.OPT_INDENT_2 if args.indent else 0
    sys.stdout.buffer.write(orjson.dumps(message, option=option) + b"\n")
    sys.stdout.flush()
    return 0

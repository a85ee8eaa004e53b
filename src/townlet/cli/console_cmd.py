"""``townlet console URL COMMAND [key=value …]``: send one console command to a running server.

The token comes from ``--token`` or the ``TOWNLET_TOKEN`` environment variable. Values are typed by the
command's argument schema (``state=on`` stays the word ``on`` where the field takes a word; ``x=10`` is a
number, ``on=false`` a boolean, ``agents=[a,b]`` or ``agents=a,b`` a list); ``--args`` takes one JSON object
instead. Prints the result as JSON; the exit code is 0 when the command was applied, 1 when it
was refused or failed (the code is in the JSON), 2 for bad usage or an unreachable server.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from typing import Any

EXAMPLES = """examples:
  export TOWNLET_TOKEN=$(townlet token issue --role admin --principal ops --ttl 1h)
  townlet console http://127.0.0.1:8000 status
  townlet console http://127.0.0.1:8000 pause on=true
  townlet console http://127.0.0.1:8000 spawn agent=visitor_1 x=16 y=11
  townlet console http://127.0.0.1:8000 setneed agent=agent_2 need=hunger value=0.9
  townlet console http://127.0.0.1:8000 blackout state=on
  townlet console http://127.0.0.1:8000 perturbations state=off    # the daily schedule; running ones end on time
  townlet console http://127.0.0.1:8000 arrange_meet --args '{"agents": ["agent_1", "agent_4"]}'
  townlet console http://127.0.0.1:8000 help --token "$VIEWER_TOKEN"
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``console`` subcommand."""
    p = sub.add_parser(
        "console",
        help="send a console command to a running server (townlet serve)",
        formatter_class=formatter,
        description=__doc__,
        epilog=EXAMPLES,
    )
    p.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8000")
    p.add_argument("command", metavar="COMMAND", help="a console command (help lists them)")
    p.add_argument("pairs", nargs="*", metavar="KEY=VALUE", help="arguments")
    p.add_argument("--token", default=None, help="a console token (default: $TOWNLET_TOKEN)")
    p.add_argument("--args", dest="json_args", default=None, metavar="JSON", help="arguments as one JSON object")
    p.add_argument("--cmd-id", default=None, metavar="ID", help="idempotency key: a retry with it runs once")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds to wait for the answer")
    p.add_argument("--cafile", default=None, metavar="F", help="CA bundle to verify an https server")
    p.add_argument("--insecure", action="store_true", help="do not verify the server certificate (testing only)")
    p.add_argument("--indent", action="store_true", help="pretty-print the result")
    p.set_defaults(handler=console_command)


def parse_pairs(pairs: list[str], json_args: str | None, command: str | None = None) -> dict[str, Any]:
    """``key=value`` words merged over a JSON object, each value typed by the command's argument schema.

    A value whose field takes a string stays the text given (``state=on``, ``note=10:00``, ``agent=007``); one
    whose field takes a number, a boolean, a list or a mapping is read as YAML (``x=10``, ``on=false``,
    ``agents=[a, b]`` or ``agents=a,b``, ``needs={hunger: 0.5}``). Keys the schema does not know (or an unknown
    command) are typed as YAML; the server then names what it refuses.

    Raises:
        ValueError: A word without ``=`` or JSON that is not an object.
    """
    args: dict[str, Any] = {}
    if json_args:
        loaded = json.loads(json_args)
        if not isinstance(loaded, dict):
            raise ValueError("--args must be a JSON object")
        args.update(loaded)
    schema = _argument_schema(command)
    fields, defs = schema.get("properties", {}), schema.get("$defs", {})
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected key=value, got {pair!r}")
        args[key] = _typed(raw) if key not in fields else _by_schema(raw, fields[key], defs)
    return args


def _argument_schema(command: str | None) -> dict[str, Any]:
    """The JSON Schema of a command's arguments as this version of townlet defines them ({} when unknown)."""
    if command is None:
        return {}
    from townlet.console import REGISTRY

    found = REGISTRY.get(command)
    return found.args.model_json_schema() if found is not None else {}


def _types(schema: dict[str, Any], defs: dict[str, Any]) -> tuple[set[str], dict[str, Any] | None]:
    """The JSON types a field accepts, and the schema of its list items (when it takes a list)."""
    if "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    types: set[str] = set()
    items = None
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        more, branch_items = _types(branch, defs)
        types |= more
        items = items or branch_items
    kind = schema.get("type")
    types |= set(kind) if isinstance(kind, list) else {kind} if kind else set()
    for value in [*schema.get("enum", []), *([schema["const"]] if "const" in schema else [])]:
        types.add({str: "string", bool: "boolean", int: "integer", float: "number"}.get(type(value), "null"))
    if "array" in types:
        items = items or schema.get("items", {})
    return types, items


def _by_schema(raw: str, schema: dict[str, Any], defs: dict[str, Any]) -> Any:
    """``raw`` typed for a field of the argument schema."""
    types, items = _types(schema, defs)
    if "null" in types and raw.strip() in ("null", "~"):
        return None
    if "string" in types:
        return raw
    value = _typed(raw)
    if "array" in types and isinstance(value, str):  # agents=a,b: comma-separated items
        return [_by_schema(part.strip(), items or {}, defs) for part in raw.split(",")]
    return value


def _typed(raw: str) -> Any:
    """Typed as ``--set`` values are (YAML, with ``10:00`` kept as text); what JSON cannot carry stays text."""
    from townlet.config.loader import parse_override

    if not raw.strip():
        return ""
    value = parse_override(f"value={raw}")[1]
    if value is None and raw.strip() not in ("null", "~"):
        return raw
    try:
        json.dumps(value)
    except TypeError:
        return raw
    return value


def console_command(args: argparse.Namespace) -> int:
    """Post the command and print the answer."""
    token = args.token or os.environ.get("TOWNLET_TOKEN")
    if not token:
        print(
            "townlet: error: no token: pass --token or set TOWNLET_TOKEN "
            "(townlet token issue --role admin --principal NAME)",
            file=sys.stderr,
        )
        return 2
    try:
        cmd_args = parse_pairs(args.pairs, args.json_args, args.command)
    except ValueError as exc:
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    payload = {"cmd": args.command, "args": cmd_args, "cmd_id": args.cmd_id or uuid.uuid4().hex}
    request = urllib.request.Request(
        args.url.rstrip("/") + "/api/console",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    context = None
    if args.url.startswith("https://"):
        context = ssl.create_default_context(cafile=args.cafile)
        if args.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(request, timeout=args.timeout, context=context) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"townlet: error: cannot reach {args.url}: {reason}", file=sys.stderr)
        return 2
    try:
        result = json.loads(body)
    except json.JSONDecodeError:
        print(f"townlet: error: the server answered something else than JSON: {body[:200]!r}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2 if args.indent else None))
    return 0 if result.get("ok") else 1

"""``townlet telemetry schema|replay|collect``: the JSON Schema; the state at a tick; the TCP sink."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

EXAMPLES = """examples:
  townlet telemetry schema > telemetry-v2.json
  townlet run --ticks 2000 --telemetry town.jsonl
  townlet telemetry replay town.jsonl --tick 1500 | jq .state.agents.agent_0.needs
  townlet telemetry replay town.jsonl            # the last tick in the file
  townlet telemetry collect --listen 0.0.0.0:7010 --out /srv/telemetry --tls-cert sink.pem --tls-key sink.key
  townlet telemetry collect --listen 127.0.0.1:7010 --out sink --allow-plaintext   # loopback only
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
        "schema",
        help="print the JSON Schema every stream line validates against",
        formatter_class=formatter,
        description="Print the published telemetry JSON Schema (draft 2020-12).",
        epilog=EXAMPLES,
    )
    schema.set_defaults(handler=schema_command)
    replay = inner.add_parser(
        "replay",
        help="rebuild the full state at a tick from a stream file",
        formatter_class=formatter,
        description="Apply the stream's diffs to its snapshot and print the state after tick T as one "
        "snapshot message (JSON). Exit code 2 when the file does not reach that tick.",
        epilog=EXAMPLES,
    )
    replay.add_argument("file", metavar="FILE", help="a telemetry JSONL file (townlet run --telemetry FILE)")
    replay.add_argument("--tick", type=int, default=None, metavar="T", help="tick to rebuild (default: the last)")
    replay.add_argument("--indent", action="store_true", help="pretty-print")
    replay.set_defaults(handler=replay_command)
    collect = inner.add_parser(
        "collect",
        help="receive towns' telemetry over TCP (the tcp transport) into JSONL files",
        formatter_class=formatter,
        epilog=EXAMPLES,
        description="Listen for the tcp transport and write each connection to DIR/town-<UTC time>.jsonl; a file "
        "past --max-bytes continues in a new one that opens with a rebuilt snapshot, so every file replays on "
        "its own. TLS unless --allow-plaintext on a loopback address. Runs until Ctrl+C or SIGTERM.",
    )
    collect.add_argument(
        "--listen",
        default="127.0.0.1:7010",
        metavar="HOST:PORT",
        help="address to listen on (default 127.0.0.1:7010; port 0 picks a free one)",
    )
    collect.add_argument("--out", required=True, metavar="DIR", help="directory of the stream files (created)")
    collect.add_argument("--tls-cert", default=None, metavar="F", help="server certificate (PEM)")
    collect.add_argument("--tls-key", default=None, metavar="F", help="its private key (PEM)")
    collect.add_argument(
        "--client-ca",
        default=None,
        metavar="F",
        help="require client certificates signed by this CA (the transport's cert_file)",
    )
    collect.add_argument(
        "--allow-plaintext",
        action="store_true",
        help="no TLS (only on a loopback address, as the tcp transport requires)",
    )
    collect.add_argument(
        "--max-bytes",
        type=int,
        default=100 * 2**20,
        metavar="N",
        help="continue in a new file past N bytes (default 100 MiB; 0 never)",
    )
    collect.add_argument("--keep", type=int, default=10, metavar="N", help="files kept (default 10; 0 all)")
    collect.add_argument("--max-connections", type=int, default=4, metavar="N", help="towns at once (default 4)")
    collect.set_defaults(handler=collect_command)
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


def collect_command(args: argparse.Namespace) -> int:
    """Run the sink until interrupted."""
    import signal

    from townlet.config.models import is_loopback_host
    from townlet.logs import configure_logging
    from townlet.telemetry.collector import Sink
    from townlet.telemetry.tls import server_context

    host, sep, port_text = args.listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        print(f"townlet: error: --listen: expected HOST:PORT, got {args.listen!r}", file=sys.stderr)
        return 2
    if min(args.max_bytes, args.keep) < 0 or args.max_connections < 1:
        print("townlet: error: --max-bytes and --keep must be >= 0, --max-connections >= 1", file=sys.stderr)
        return 2
    if args.tls_cert is None:
        if not args.allow_plaintext:
            print("townlet: error: give --tls-cert and --tls-key (or --allow-plaintext on loopback)", file=sys.stderr)
            return 2
        if not is_loopback_host(host):
            print(f"townlet: error: plaintext telemetry only on a loopback address, not {host!r}", file=sys.stderr)
            return 2
    configure_logging()
    try:
        context = None if args.tls_cert is None else server_context(args.tls_cert, args.tls_key, args.client_ca)
        sink = Sink(
            host,
            int(port_text),
            args.out,
            context,
            max_bytes=args.max_bytes,
            keep=args.keep,
            max_connections=args.max_connections,
        )
    except OSError as exc:  # a busy port, a bad certificate or key (ssl.SSLError is an OSError)
        print(f"townlet: error: {exc}", file=sys.stderr)
        return 2
    scheme = "tcp+tls" if context is not None else "tcp"
    print(f"townlet: collecting telemetry on {scheme}://{host}:{sink.port} into {sink.out_dir}", flush=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: sink.close())
    try:
        sink.serve()
    except KeyboardInterrupt:
        pass
    finally:
        sink.close()
    return 0

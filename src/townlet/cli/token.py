"""``townlet token issue|revoke|list|rotate|retire``: console credentials and signing keys.

Files come from the ``console`` config section (``state_dir``, default ``~/.townlet``); ``--state-dir`` and
``--set console.keys_file=…`` override them. A running server re-reads keys and revocations on change.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from townlet.cli.main import add_config_options

EXAMPLES = """examples:
  townlet token issue --role admin --principal alice --ttl 8h      # prints the token alone
  TOKEN=$(townlet token issue --role viewer --principal stream-overlay --ttl 30d)
  townlet token list
  townlet token revoke 3f2a…                                       # a token id (jti) or a whole token
  townlet token revoke --principal alice                           # every token alice holds now
  townlet token rotate                                             # new signing key; old tokens still verify
  townlet token retire k20250101120000-ab12cd                      # old key gone: its tokens stop working
"""


def register(sub: Any, formatter: Any) -> None:
    """Add the ``token`` subcommand group."""
    p = sub.add_parser(
        "token",
        help="issue, revoke and list console tokens; rotate signing keys",
        formatter_class=formatter,
        description=__doc__,
        epilog=EXAMPLES,
    )
    inner = p.add_subparsers(dest="token_command", metavar="ACTION")

    def action(name: str, text: str, handler: Any) -> argparse.ArgumentParser:
        q = inner.add_parser(name, help=text, description=text, formatter_class=formatter, epilog=EXAMPLES)
        add_config_options(q, ", e.g. --set console.state_dir=/var/lib/townlet")
        q.add_argument("--state-dir", default=None, metavar="DIR", help="where keys and revocations live")
        q.set_defaults(handler=handler)
        return q

    q = action("issue", "issue a signed token and print it alone on stdout", issue_command)
    q.add_argument("--role", required=True, choices=("admin", "viewer"))
    q.add_argument("--principal", required=True, metavar="NAME", help="who the token speaks for")
    q.add_argument(
        "--ttl", default=None, metavar="DURATION", help="lifetime, e.g. 30m, 1h, 7d (default: console.default_ttl)"
    )
    q = action("revoke", "revoke a token (by id or whole token) or every token of a principal", revoke_command)
    q.add_argument("token", nargs="?", default=None, metavar="TOKEN_OR_ID")
    q.add_argument("--principal", default=None, metavar="NAME", help="revoke every token this principal holds now")
    q.add_argument("--reason", default="", help="kept in the revocation list")
    q = action("list", "list issued tokens with their status (never the tokens themselves)", list_command)
    q.add_argument("--json", action="store_true", help="one JSON array")
    q = action("rotate", "make a fresh signing key active (old keys keep verifying until retired)", rotate_command)
    q.add_argument("--retire-old", action="store_true", help="also drop every older key at once")
    q = action("retire", "remove a signing key: tokens it signed stop working at once", retire_command)
    q.add_argument("kid", metavar="KEY_ID")
    p.set_defaults(handler=lambda args: _help(p))
    for parser in inner.choices.values():  # a missing or corrupt key set or revocation list: one line
        parser.set_defaults(handler=_credential_errors(parser.get_default("handler")))


def _credential_errors(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from townlet.console.auth import RevocationsUnavailable
        from townlet.keys import StateFileError

        try:
            return int(handler(args))
        except (RevocationsUnavailable, StateFileError) as exc:
            return _fail(str(exc))

    return run


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _authority(args: argparse.Namespace) -> Any:
    from townlet.config.loader import load_config
    from townlet.console.auth import TokenAuthority

    overrides = list(args.overrides)
    if args.state_dir:
        overrides.append(f"console.state_dir={args.state_dir}")
    console = load_config(args.config, overrides).config.console
    return TokenAuthority.from_config(console), console


def _fail(message: str) -> int:
    print(f"townlet: error: {message}", file=sys.stderr)
    return 2


def issue_command(args: argparse.Namespace) -> int:
    """Issue one token."""
    from townlet.console.auth import parse_ttl

    authority, console = _authority(args)
    try:
        token, claims = authority.issue(args.principal, args.role, parse_ttl(args.ttl or console.default_ttl))
    except ValueError as exc:
        return _fail(str(exc))
    print(token)
    expires = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(claims["exp"]))
    print(f"issued {claims['role']} token {claims['jti']} for {claims['sub']}, expires {expires}", file=sys.stderr)
    return 0


def revoke_command(args: argparse.Namespace) -> int:
    """Revoke a token or a principal."""
    authority, _ = _authority(args)
    if args.token is None and args.principal is None:
        return _fail("give a token id (or token), or --principal NAME")
    try:
        authority.revoke(args.token, args.principal, args.reason)
    except Exception as exc:  # a garbled token: say so instead of a traceback
        return _fail(f"cannot revoke: {exc}")
    what = f"principal {args.principal}" if args.principal else "token"
    print(f"revoked {what}", file=sys.stderr)
    return 0


def list_command(args: argparse.Namespace) -> int:
    """List issued tokens."""
    authority, _ = _authority(args)
    records = authority.issued()
    if args.json:
        sys.stdout.write(orjson.dumps(records).decode() + "\n")
        return 0
    active, keys = authority.key_ids()
    print(f"signing keys: {', '.join(keys) or 'none'} (active: {active or 'none'})")
    print(f"{'jti':32}  {'principal':20}  {'role':6}  {'status':8}  expires (UTC)")
    for r in records:
        expires = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["exp"]))
        print(f"{r['jti']:32}  {r['sub']:20}  {r['role']:6}  {r['status']:8}  {expires}")
    return 0


def rotate_command(args: argparse.Namespace) -> int:
    """Rotate the signing key."""
    authority, _ = _authority(args)
    kid = authority.rotate(retire_others=args.retire_old)
    print(kid)
    print(
        "new tokens are signed with this key" + ("; older keys are retired" if args.retire_old else ""), file=sys.stderr
    )
    return 0


def retire_command(args: argparse.Namespace) -> int:
    """Retire a signing key."""
    authority, _ = _authority(args)
    try:
        authority.retire(args.kid)
    except KeyError:
        return _fail(f"no key {args.kid!r}")
    except ValueError as exc:
        return _fail(str(exc))
    print(f"retired {args.kid}", file=sys.stderr)
    return 0

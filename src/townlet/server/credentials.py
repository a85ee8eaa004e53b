"""First-run credentials of a live server: a signing key and one admin token, shown once."""

from __future__ import annotations

from townlet.config.models import ConsoleConfig, ServerConfig
from townlet.console.auth import TokenAuthority, console_paths, parse_ttl

BOOTSTRAP_PRINCIPAL = "admin"


def first_run_admin_token(console: ConsoleConfig, server: ServerConfig) -> str | None:
    """On a fresh install (no signing key yet) create one and issue an admin token; None otherwise.

    The token is returned for printing once and never stored (the issue log keeps only its id).

    Raises:
        RevocationsUnavailable: keys exist but the revocation list is missing or corrupt (fail closed).
    """
    authority = TokenAuthority.from_config(console)
    active, _ = authority.key_ids()
    if active is not None:
        authority.ensure_revocation_list()
        return None
    authority.rotate()
    ttl = min(parse_ttl(server.bootstrap_ttl), authority.max_ttl_s)
    token, _ = authority.issue(BOOTSTRAP_PRINCIPAL, "admin", ttl)
    return token


def keys_file(console: ConsoleConfig) -> str:
    """Where the signing keys live (for messages)."""
    return str(console_paths(console)["keys"])

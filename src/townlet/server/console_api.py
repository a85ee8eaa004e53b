"""The console over HTTP: bearer tokens in, console results out, with stable status codes.

``POST /api/console`` with ``Authorization: Bearer TOKEN`` and ``{"cmd", "args", "cmd_id"}``. The body of
every answer is the console :class:`~townlet.console.service.Result` as JSON; the status follows its code
(``STATUS_OF``). Rate limits are the console's (per principal, and per source address for requests whose
token fails); the source is the peer's address, or, when the peer is one of ``server.trusted_proxies``, the
last address in ``X-Forwarded-For`` that is not a trusted proxy.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from typing import Any

from townlet.console.errors import (
    E_ALREADY_POSSESSED,
    E_BLOCKED_TILE,
    E_BUSY_TARGET,
    E_CONFLICT,
    E_FORBIDDEN,
    E_INVALID_ARG,
    E_NOT_FOUND,
    E_RATE_LIMITED,
    E_UNAUTHENTICATED,
)

STATUS_OF: dict[str | None, int] = {
    None: 200,
    E_INVALID_ARG: 400,
    E_UNAUTHENTICATED: 401,
    E_FORBIDDEN: 403,
    E_NOT_FOUND: 404,
    E_BLOCKED_TILE: 409,
    E_BUSY_TARGET: 409,
    E_ALREADY_POSSESSED: 409,
    E_CONFLICT: 409,
    E_RATE_LIMITED: 429,
}
E_TIMEOUT = "E_TIMEOUT"  # the town did not apply the command in time (HTTP 504); not a console code
E_UNAVAILABLE = "E_UNAVAILABLE"  # the town's tick loop has stopped (HTTP 503); not a console code


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (None when absent or another scheme)."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def refusal(code: str, message: str, tick: int | None = None) -> dict[str, Any]:
    """A result body for a request refused before it reached the console."""
    return {
        "ok": False,
        "cmd": None,
        "code": code,
        "message": message,
        "data": {},
        "cmd_id": None,
        "tick": tick,
        "duplicate": False,
    }


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_networks(entries: list[str]) -> list[Network]:
    """The ``server.trusted_proxies`` entries as networks (validated by the config already)."""
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(peer: str | None, forwarded: str | None, proxies: list[Network]) -> str:
    """The client a request speaks for: the peer, or behind trusted proxies the first untrusted forwarded hop.

    ``X-Forwarded-For`` is read right to left (each proxy appends the address it saw), skipping trusted
    proxies; a malformed entry stops the walk at the last trusted hop, so a client cannot pick its address.
    """
    if peer is None:
        return "?"
    here = _address(peer)
    if not forwarded or here is None or not any(here in net for net in proxies):
        return peer
    for hop in reversed(forwarded.split(",")[-64:]):
        address = _address(hop)
        if address is None:
            return str(here)
        if not any(address in net for net in proxies):
            return str(address)
        here = address
    return str(here)


class ResultCounter:
    """Console answers by result code, for ``/metrics``."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, code: str | None) -> None:
        """Count one answer (``ok`` when the command was applied)."""
        with self._lock:
            self.counts[code or "ok"] += 1

    def snapshot(self) -> Counter[str]:
        """A copy of the counts."""
        with self._lock:
            return Counter(self.counts)

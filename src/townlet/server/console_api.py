"""The console over HTTP: bearer tokens in, console results out, with stable status codes.

``POST /api/console`` with ``Authorization: Bearer TOKEN`` and ``{"cmd", "args", "cmd_id"}``. The body of
every answer is the console :class:`~townlet.console.service.Result` as JSON; the status follows its code
(``STATUS_OF``). Besides the per-principal rate limit of the console, clients whose requests fail
authentication are slowed per address, so nobody can guess tokens at line speed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from townlet.config.models import RateLimitConfig
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
from townlet.console.service import TokenBucket

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
    return {"ok": False, "cmd": None, "code": code, "message": message, "data": {}, "cmd_id": None,
            "tick": tick, "duplicate": False}


class FailedAuthGuard:
    """Slows down an address whose requests keep failing authentication.

    Each failure takes a token from the address's bucket; once it is empty the address is refused
    (``E_RATE_LIMITED``) without checking anything until the bucket refills.
    """

    def __init__(self, cfg: RateLimitConfig) -> None:
        self.enabled = cfg.per_second > 0
        self.bucket = TokenBucket(cfg.per_second, cfg.burst)
        self.wait_s = 1.0 / cfg.per_second if self.enabled else 0.0
        self.locked: dict[str, float] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str) -> bool:
        """Whether ``address`` must wait before trying again."""
        with self._lock:
            until = self.locked.get(address)
            if until is None:
                return False
            if time.monotonic() >= until:
                del self.locked[address]
                return False
            return True

    def failed(self, address: str) -> None:
        """Count one failed authentication from ``address``."""
        if self.enabled and not self.bucket(address):
            with self._lock:
                self.locked[address] = time.monotonic() + self.wait_s
                if len(self.locked) > 100_000:  # a flood from everywhere: forget the oldest
                    self.locked.pop(next(iter(self.locked)))


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

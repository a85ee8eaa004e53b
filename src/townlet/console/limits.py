"""Console rate limits: token buckets per principal and per source address, bounded in memory.

Every console request spends from a bucket before anything else is done for it: a verified principal's own
bucket (``console.rate_limit``), or, when the token does not verify, its source address's bucket of
failed authentications (``server.auth_failures``). A valid token is never charged for anyone else's
failures, so nobody can lock an operator out by failing from the same address (a proxy shared by all).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_BUCKETS = 100_000  # least recently used buckets are forgotten past this (a forgotten bucket is full)


class TokenBucket:
    """A refill rate and a burst per key (a principal or an address).

    Args:
        per_second: Refill, in requests per second (0: unlimited).
        burst: Capacity.
        clock: Monotonic seconds (tests pass a fake one).
        max_keys: Buckets kept; the least recently used are forgotten beyond it.
    """

    def __init__(
        self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_BUCKETS
    ) -> None:
        self.rate = per_second
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, key: str) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        if self.rate <= 0:
            return True
        now = self.clock()
        with self._lock:
            level, last = self.buckets.pop(key, (self.burst, now))
            level = min(self.burst, level + (now - last) * self.rate)
            allowed = level >= 1.0
            self.buckets[key] = (level - 1.0 if allowed else level, now)
            if len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
            return allowed

    def wait_s(self, key: str) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            level, last = self.buckets.get(key, (self.burst, self.clock()))
        level = min(self.burst, level + (self.clock() - last) * self.rate)
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate

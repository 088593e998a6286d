"""A per-client token bucket: each client may make `burst` requests at once and `rate`
a second after that. Used by the time-stamping authority (a public service of the
intranet: one busy or hostile terminal must not take it from the others)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000) -> None:
        self.rate, self.burst, self._clock, self._max = rate, burst, clock, max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill)
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        """Take one token for `client`; False when it has none left (answer 429)."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > self._max:  # forget full buckets: they hold nothing
                full = [c for c, (t, _) in self._buckets.items() if t >= self.burst - 1]
                for c in full[: len(full) // 2 or 1]:
                    del self._buckets[c]
            return allowed

    def retry_after(self, client: str) -> int:
        """Seconds until `client` has a token again (for the Retry-After header)."""
        with self._lock:
            tokens, _ = self._buckets.get(client, (float(self.burst), 0.0))
        return max(1, int((1.0 - tokens) / self.rate + 0.999)) if tokens < 1.0 else 0

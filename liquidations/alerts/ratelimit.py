"""Per-destination send limits: at most `count` messages per `per` seconds for one key."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    per: float


class RateLimiter:
    """A sliding window of send times per key (a chat, a webhook), plus server-told pauses."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sent: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def wait_time(self, key: str, rate: Rate | None) -> float:
        """Seconds until one more message may go to key (0: now)."""
        now = self._clock()
        wait = max(0.0, self._blocked_until.get(key, 0.0) - now)
        if rate is None:
            return wait
        sent = self._sent.get(key)
        if sent is not None:
            while sent and sent[0] <= now - rate.per:
                sent.popleft()
            if len(sent) >= rate.count:
                wait = max(wait, sent[0] + rate.per - now)
        return wait

    def take(self, key: str, rate: Rate | None) -> None:
        """Count one message sent to key now."""
        if rate is not None:
            self._sent.setdefault(key, deque()).append(self._clock())

    def block(self, key: str, seconds: float) -> None:
        """Send nothing to key for this long (the destination said Retry-After)."""
        until = self._clock() + seconds
        self._blocked_until[key] = max(until, self._blocked_until.get(key, 0.0))

"""Rate-limited logging for faults that repeat: a few lines in full, then one summary.

A Redis outage failed every batch's broadcast and wrote a traceback each time (3.4 MB in
20 s); a flood of malformed frames wrote one WARNING per frame (1.5 MB in 30 s at 250/s).
The counters in `liquidations status` stay exact; the log says what happened, once.

- RateLimitedLog: for our own call sites. Per kind of fault, the first BURST lines of an
  interval are logged in full; the rest are counted by reason, and one summary line per
  interval says how many and why. recovered() closes a run of failures with one line.
- RepeatFilter: on the console handler, for everyone else's loggers (channels-redis,
  psycopg's pool, django.request): the same limit per logger and message template.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

BURST = 3
INTERVAL_SECONDS = 60.0
# Reasons named in a summary line; the rest are counted as "other".
SUMMARY_REASONS = 5
# Set on records this module wrote or already limited, so RepeatFilter lets them through.
LIMITED = "rate_limited"


@dataclass
class _Window:
    started: float
    shown: int = 0
    held_back: Counter[str] = field(default_factory=Counter)
    failures: int = 0  # since the last recovered(), for its line


@dataclass(frozen=True)
class LastError:
    at: datetime
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"at": self.at.isoformat(timespec="seconds"), "message": self.message}


class RateLimitedLog:
    """Log repeating faults of named kinds without flooding; remember the last of each."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = BURST,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self.last: dict[str, LastError] = {}
        self._windows: dict[str, _Window] = {}

    def log(
        self,
        level: int,
        kind: str,
        msg: str,
        *args: object,
        reason: str = "",
        exc_info: Any = None,
    ) -> None:
        """Log msg % args in full if few of this kind were logged lately, else count it."""
        now = self.clock()
        window = self._window(kind, now)
        window.failures += 1
        text = msg % args if args else msg
        self.last[kind] = LastError(at=datetime.now(UTC), message=text[:300])
        if window.shown < self.burst:
            window.shown += 1
            self.logger.log(level, msg, *args, exc_info=exc_info, extra={LIMITED: True})
            if window.shown == self.burst:
                self.logger.log(
                    level,
                    "%s: further ones in the next %.0f s are counted, not logged",
                    kind,
                    self.interval,
                    extra={LIMITED: True},
                )
        else:
            window.held_back[reason or kind] += 1

    def note(self, kind: str, message: str) -> None:
        """Remember the last error of a kind without logging it (logged elsewhere)."""
        self.last[kind] = LastError(at=datetime.now(UTC), message=message[:300])

    def recovered(self, kind: str, msg: str) -> None:
        """Say once that a failing kind works again (with how many failures it had)."""
        window = self._windows.get(kind)
        if window is None or not window.failures:
            return
        self._summarise(kind, window)
        self.logger.info("%s (after %d failures)", msg, window.failures, extra={LIMITED: True})
        del self._windows[kind]

    def flush(self) -> None:
        """Write the summary of every interval that has ended (call it periodically)."""
        now = self.clock()
        for kind in list(self._windows):
            self._window(kind, now)

    def _window(self, kind: str, now: float) -> _Window:
        window = self._windows.get(kind)
        if window is None:
            window = self._windows[kind] = _Window(started=now)
        elif now - window.started >= self.interval:
            self._summarise(kind, window)
            window.started, window.shown = now, 0
        return window

    def _summarise(self, kind: str, window: _Window) -> None:
        held = sum(window.held_back.values())
        if not held:
            return
        common = window.held_back.most_common(SUMMARY_REASONS)
        reasons = [f"{reason} ×{count:,}" for reason, count in common]
        if (other := held - sum(count for _, count in common)) > 0:
            reasons.append(f"other ×{other:,}")
        self.logger.warning(
            "%s: %s more in the last %.0f s, not logged one by one: %s",
            kind,
            f"{held:,}",
            self.clock() - window.started,
            "; ".join(reasons),
            extra={LIMITED: True},
        )
        window.held_back.clear()


class RepeatFilter(logging.Filter):
    """A handler filter: per logger and message template, BURST records per interval.

    Only WARNING and above are limited. A record let through after some were held back
    says how many. Records marked by RateLimitedLog pass untouched.
    """

    def __init__(
        self,
        burst: int = BURST,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self._windows: dict[tuple[str, int, str], _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, LIMITED, False):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window.started >= self.interval:
            held = sum(window.held_back.values()) if window else 0
            window = self._windows[key] = _Window(started=now)
            if held:
                note = f"{held:,} more like this in the last {self.interval:.0f} s were not logged"
                record.msg = f"{record.getMessage()} [{note}]"
                record.args = None
        if window.shown >= self.burst:
            window.held_back["held"] += 1
            return False
        window.shown += 1
        return True

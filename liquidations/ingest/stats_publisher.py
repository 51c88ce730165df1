"""The live stats strip: pushed at most once a second from the worker.

Each tick also advances the per-minute rollup (services/rollup.py) the stats are read from.

Cost-bounded by design: the publisher polls the newest id once a second (a primary-key
range read), recomputes the all-market strip only when rows arrived (or every
IDLE_REFRESH seconds, as windows slide), and at most MAX_SYMBOLS_PER_TICK symbol strips
per tick, oldest-touched first, so a crash day with 400 busy symbols costs the same per
second as a quiet one; every touched symbol is still refreshed within a bounded delay.

The strips of a tick are computed together but rendered and sent one at a time, spread
over the second. Rendered at once, eleven strips held the GIL for ~30 ms every second,
and in embedded mode (worker and sockets in one process) that burst was the live feed's
p99: +45-55 ms added at 440 events/s x 200 viewers, +10-14 ms without the strips.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..live.broadcast import broadcast, stats_compute, stats_message
from ..logs import RateLimitedLog
from ..selectors.feed import liquidation_last_id, liquidation_symbols_since
from ..services.rollup import liquidation_rollup_advance
from .dbthread import DbThread

logger = logging.getLogger(__name__)

PUBLISH_INTERVAL = 1.0
MAX_SYMBOLS_PER_TICK = 10
IDLE_REFRESH = 15.0


def _changes(after_id: int) -> tuple[int, list[str]]:
    top = liquidation_last_id()
    if top <= after_id:
        return top, []
    return top, liquidation_symbols_since(after_id=after_id, up_to_id=top)


class StatsPublisher:
    """Once a second, broadcast fresh stats strips for the scopes that changed."""

    def __init__(
        self,
        *,
        channel_layer: Any,
        interval: float = PUBLISH_INTERVAL,
        max_symbols: int = MAX_SYMBOLS_PER_TICK,
        idle_refresh: float = IDLE_REFRESH,
    ) -> None:
        self.channel_layer = channel_layer
        self.interval = interval
        self.max_symbols = max_symbols
        self.idle_refresh = idle_refresh
        # Its own thread and connection: a stats query never delays the ingest writes.
        self._db = DbThread(name="stats-db")
        self._pending: dict[str, None] = {}  # an ordered set, oldest-touched first
        self.published = 0
        self._log = RateLimitedLog(logger)

    async def run(self) -> None:
        try:
            last_id = await self._db.call(liquidation_last_id)
            last_all = due = time.monotonic()
            while True:
                # A tick every interval, however long the last one spread its strips.
                due = max(due + self.interval, time.monotonic())
                await asyncio.sleep(due - time.monotonic())
                try:
                    last_id, last_all = await self.tick(last_id, last_all)
                except Exception as exc:
                    # A failed tick (database or Redis restarting) is retried next second.
                    self._log.log(
                        logging.WARNING,
                        "live stats",
                        "Publishing live stats failed: %r",
                        exc,
                        reason=type(exc).__name__,
                    )
                else:
                    self._log.recovered("live stats", "Publishing live stats works again")
                self._log.flush()
        finally:
            await self._db.aclose(wait=False)

    async def tick(self, last_id: int, last_all: float) -> tuple[int, float]:
        # Keep the per-minute rollup current: it is what makes the stats cheap.
        await self._db.call(liquidation_rollup_advance)
        top, touched = await self._db.call(_changes, last_id)
        for symbol in touched:
            # A symbol already waiting keeps its place, so a busy one cannot starve others.
            self._pending.setdefault(symbol, None)
        include_all = bool(touched) or time.monotonic() - last_all >= self.idle_refresh
        symbols = list(self._pending)[: self.max_symbols]
        scopes: list[str | None] = [None] if include_all else []
        scopes += symbols
        if not scopes:
            return top, last_all
        every = await self._db.call(stats_compute, scopes=scopes)
        for symbol in symbols:
            del self._pending[symbol]
        last_all = time.monotonic() if include_all else last_all
        # One strip at a time across the interval (each renders in ~3 ms): no burst.
        spacing = self.interval / (len(scopes) + 1)
        for n, scope in enumerate(scopes):
            if n:
                await asyncio.sleep(spacing)
            messages = await self._db.call(stats_message, scope=scope, stats=every[scope])
            await broadcast(channel_layer=self.channel_layer, messages=messages)
            self.published += len(messages)
        return top, last_all

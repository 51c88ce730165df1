"""The live stats strip: render `_stats.html`, and push it at most once a second.

Each tick also advances the per-minute rollup (rollup.py) the stats are read from.

Cost-bounded by design: the publisher polls the newest id once a second (a primary-key
range read), recomputes the all-market strip only when rows arrived (or every
IDLE_REFRESH seconds, as windows slide), and at most MAX_SYMBOLS_PER_TICK symbol strips
per tick, oldest-touched first, so a crash day with 400 busy symbols costs the same per
second as a quiet one; every touched symbol is still refreshed within a bounded delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections
from django.template.loader import render_to_string
from django.utils import timezone

from . import analytics
from .rollup import liquidation_rollup_advance
from .services import liquidation_broadcast

logger = logging.getLogger(__name__)

STATS_MESSAGE_TYPE = "liquidations.stats"
PUBLISH_INTERVAL = 1.0
MAX_SYMBOLS_PER_TICK = 10
IDLE_REFRESH = 15.0


def stats_group(symbol: str | None) -> str:
    """Return the group whose members get the stats strip of one scope.

    Separate from the feed groups, which carry only row batches (their contract).
    """
    return f"stats.{symbol}" if symbol else "stats.all"


def stats_context(
    *, symbol: str | None = None, now: datetime | None = None, stats: list | None = None
) -> dict:
    """Return the context `_stats.html` renders: the windows of one scope."""
    if stats is None:
        stats = analytics.liquidation_stats(symbol=symbol, now=now or timezone.now())
    return {"stats": stats, "scope": symbol}


# A page's strip is reused by this process for up to PAGE_STATS_SECONDS: the socket
# replaces it every second anyway, and a rush of page loads on a crash day then costs
# one computation per scope per second instead of one per load (~10 ms on 5 M rows).
PAGE_STATS_SECONDS = 1.0
MAX_PAGE_STATS_SCOPES = 1000
_page_stats: dict[str | None, tuple[float, list]] = {}


def page_stats_context(*, symbol: str | None = None) -> dict:
    """Return stats_context for a page: computed at most once a second per scope."""
    now = time.monotonic()
    recent = _page_stats.get(symbol)
    if recent is not None and now - recent[0] < PAGE_STATS_SECONDS:
        return stats_context(symbol=symbol, stats=recent[1])
    context = stats_context(symbol=symbol)
    if len(_page_stats) >= MAX_PAGE_STATS_SCOPES:
        _page_stats.clear()  # bounded: one entry per scope asked for lately
    _page_stats[symbol] = (now, context["stats"])
    return context


def page_stats_clear() -> None:
    _page_stats.clear()


def stats_html(
    *,
    symbol: str | None = None,
    now: datetime | None = None,
    oob: bool = False,
    stats: list | None = None,
) -> str:
    context = stats_context(symbol=symbol, now=now, stats=stats)
    return render_to_string("liquidations/_stats.html", {**context, "oob": oob})


def stats_messages(*, include_all: bool, symbols: list[str]) -> dict[str, dict]:
    """Compute every scope's windows at once, render each strip once: one message per group."""
    scopes: list[str | None] = [None] if include_all else []
    scopes += symbols
    if not scopes:
        return {}
    every = analytics.liquidation_stats_many(scopes=scopes, now=timezone.now())
    return {
        stats_group(scope): {
            "type": STATS_MESSAGE_TYPE,
            "html": stats_html(symbol=scope, oob=True, stats=every[scope]),
        }
        for scope in scopes
    }


def _max_id() -> int:
    close_old_connections()
    return analytics.liquidation_max_id()


def _changes(after_id: int) -> tuple[int, list[str]]:
    close_old_connections()
    top = analytics.liquidation_max_id()
    if top <= after_id:
        return top, []
    return top, analytics.liquidation_symbols_since(after_id=after_id, up_to_id=top)


def _messages(include_all: bool, symbols: list[str]) -> dict[str, dict]:
    close_old_connections()
    return stats_messages(include_all=include_all, symbols=symbols)


def _rollup() -> int:
    close_old_connections()
    return liquidation_rollup_advance()


class StatsPublisher:
    """Once a second, broadcast fresh stats strips for the scopes that changed."""

    def __init__(
        self,
        *,
        channel_layer,
        interval: float = PUBLISH_INTERVAL,
        max_symbols: int = MAX_SYMBOLS_PER_TICK,
        idle_refresh: float = IDLE_REFRESH,
    ) -> None:
        self.channel_layer = channel_layer
        self.interval = interval
        self.max_symbols = max_symbols
        self.idle_refresh = idle_refresh
        # Its own thread and connection: a stats query never delays the ingest writes.
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stats-db")
        self._pending: dict[str, None] = {}  # an ordered set, oldest-touched first
        self.published = 0

    async def _call(self, func, *args):
        return await sync_to_async(func, thread_sensitive=False, executor=self._db)(*args)

    async def run(self) -> None:
        try:
            last_id = await self._call(_max_id)
            last_all = time.monotonic()
            while True:
                await asyncio.sleep(self.interval)
                try:
                    last_id, last_all = await self.tick(last_id, last_all)
                except Exception:
                    # A failed tick (database restarting) is retried next second.
                    logger.exception("Publishing live stats failed")
        finally:
            with contextlib.suppress(Exception):
                await self._call(connections.close_all)
            self._db.shutdown(wait=False)

    async def tick(self, last_id: int, last_all: float) -> tuple[int, float]:
        # Keep the per-minute rollup current: it is what makes the stats cheap.
        await self._call(_rollup)
        top, touched = await self._call(_changes, last_id)
        for symbol in touched:
            # A symbol already waiting keeps its place, so a busy one cannot starve others.
            self._pending.setdefault(symbol, None)
        include_all = bool(touched) or time.monotonic() - last_all >= self.idle_refresh
        symbols = list(self._pending)[: self.max_symbols]
        if not include_all and not symbols:
            return top, last_all
        messages = await self._call(_messages, include_all, symbols)
        for symbol in symbols:
            del self._pending[symbol]
        await liquidation_broadcast(channel_layer=self.channel_layer, messages=messages)
        self.published += len(messages)
        return top, time.monotonic() if include_all else last_all

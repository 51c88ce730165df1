"""The worker's local order books: depth events in, REST snapshots when needed.

A book starts (and restarts after a gap or a reconnect) by buffering the depth stream,
then fetching `GET /fapi/v1/depth` and replaying the buffer on it (upstream/order_book.py
has the rules). Snapshots go through the process's RestLimiter: a 429 or a spent weight
budget waits, it is never retried into a ban. Gaps are logged and counted, and the book's
state ("resyncing") reaches the viewers' panels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings

from ..upstream.binance_market import DepthUpdate
from ..upstream.klines import RateLimited, RestLimiter, RestUnavailable, depth_fetch
from ..upstream.order_book import APPLIED, GAP, STALE, OrderBook

logger = logging.getLogger(__name__)

# Levels per side a book message carries (enough for depth 50 at coarse roundings).
PUBLISHED_LEVELS = 500
SNAPSHOT_RETRY_INITIAL_SECONDS = 0.5
SNAPSHOT_RETRY_MAX_SECONDS = 30.0
# A snapshot is fetched once events are buffering; a short wait lets a few arrive first.
SNAPSHOT_DELAY_SECONDS = 0.15


class BookKeeper:
    """Every watched symbol's order book, and the snapshot task that (re)starts each."""

    def __init__(self, *, limiter: RestLimiter, on_change: Callable[[str], None]) -> None:
        self.limiter = limiter
        self.on_change = on_change
        self.books: dict[str, OrderBook] = {}
        self.resyncs = 0
        self._snapshots: dict[str, asyncio.Task] = {}

    def open(self, symbol: str) -> None:
        self.books.setdefault(symbol, OrderBook(symbol=symbol))

    async def close(self, symbol: str) -> None:
        self.books.pop(symbol, None)
        task = self._snapshots.pop(symbol, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close_all(self) -> None:
        for symbol in list(self.books):
            await self.close(symbol)

    def reset(self, symbol: str) -> None:
        """The stream reconnected: start over from events and a new snapshot."""
        book = self.books.get(symbol)
        if book is not None:
            book.reset()
            self.on_change(symbol)

    def on_update(self, update: DepthUpdate) -> None:
        book = self.books.get(update.symbol)
        if book is None:
            return  # a late event of a book already let go
        result = book.on_update(update)
        if result == GAP:
            self._gap(book)
        elif result == APPLIED:
            self.on_change(update.symbol)
        elif update.symbol not in self._snapshots:
            self._snapshots[update.symbol] = asyncio.create_task(
                self._snapshot_loop(book), name=f"depth-snapshot-{update.symbol}"
            )

    def _gap(self, book: OrderBook) -> None:
        self.resyncs += 1
        logger.warning(
            "Order book %s: gap in the depth stream (%s); resyncing from a snapshot",
            book.symbol,
            book.last_gap,
        )
        self.on_change(book.symbol)
        if book.symbol not in self._snapshots:
            self._snapshots[book.symbol] = asyncio.create_task(
                self._snapshot_loop(book), name=f"depth-snapshot-{book.symbol}"
            )

    async def _snapshot_loop(self, book: OrderBook) -> None:
        """Fetch snapshots until the book is synced (or let go)."""
        delay = SNAPSHOT_RETRY_INITIAL_SECONDS
        try:
            await asyncio.sleep(SNAPSHOT_DELAY_SECONDS)
            while self.books.get(book.symbol) is book and not book.synced:
                wait = await self._snapshot_once(book)
                if wait is None:
                    delay = SNAPSHOT_RETRY_INITIAL_SECONDS
                    continue
                await asyncio.sleep(max(wait, delay))
                delay = min(delay * 2, SNAPSHOT_RETRY_MAX_SECONDS)
        finally:
            if self._snapshots.get(book.symbol) is asyncio.current_task():
                del self._snapshots[book.symbol]

    async def _snapshot_once(self, book: OrderBook) -> float | None:
        """Fetch and apply one snapshot; return how long to wait before another (None: go on)."""
        try:
            snapshot = await depth_fetch(
                base_url=settings.BINANCE_REST_BASE_URL,
                symbol=book.symbol,
                limit=settings.MARKET_DEPTH_SNAPSHOT_LIMIT,
                limiter=self.limiter,
            )
        except RateLimited as exc:
            logger.warning("Order book %s: snapshot postponed (%s)", book.symbol, exc)
            return exc.retry_after
        except RestUnavailable as exc:
            logger.warning("Order book %s: snapshot failed (%s)", book.symbol, exc)
            return 0.0
        if self.books.get(book.symbol) is not book:
            return None
        result = book.snapshot_apply(snapshot)
        if result == STALE:
            logger.info(
                "Order book %s: snapshot older than the stream; fetching again", book.symbol
            )
            return 0.0
        if result == GAP:
            self._gap(book)
            return 0.0
        logger.info("Order book %s synced at update id %s", book.symbol, book.last_update_id)
        self.on_change(book.symbol)
        return None

    def message(self, symbol: str) -> dict[str, Any] | None:
        """The book's top levels as plain values (a market.book message body)."""
        book = self.books.get(symbol)
        if book is None:
            return None
        if not book.synced:
            return {
                "state": book.state,
                "event_ms": book.event_ms,
                "bids": [],
                "asks": [],
                "resyncs": book.resyncs,
            }
        bids, asks = book.top(levels=PUBLISHED_LEVELS)
        return {
            "state": book.state,
            "event_ms": book.event_ms,
            "last_update_id": book.last_update_id,
            "resyncs": book.resyncs,
            "bids": [[str(p), str(q)] for p, q in bids],
            "asks": [[str(p), str(q)] for p, q in asks],
            "bids_complete": len(book.bids) <= PUBLISHED_LEVELS,
            "asks_complete": len(book.asks) <= PUBLISHED_LEVELS,
        }

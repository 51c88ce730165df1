"""The worker's market data for symbol pages: one upstream subscription per watched stream.

Web processes' market hubs say which streams their viewers watch ("market.watch" on the
worker channel); MarketWatchers turns that into subscribe / let go. Streams ride on two
StreamPools, `/market` (aggTrade, klines) and `/public` (depth), each one connection per
200 streams. What arrives is published to the stream's group, at most:

- trades every 100 ms per symbol, rendered once here (`_trade_row.html`), newest 50;
- the live candle every 250 ms per timeframe;
- the book every 250 ms per symbol (its top levels; each web process renders it per
  viewer rounding and depth);
- a stream's state ("live", "connecting", "reconnecting", "resyncing") when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from django.conf import settings

from ..live.broadcast import broadcast
from ..live.contracts import (
    MARKET_BOOK_MESSAGE_TYPE,
    MARKET_KLINE_MESSAGE_TYPE,
    MARKET_STATE_MESSAGE_TYPE,
    MARKET_TAPE_ROWS,
    MARKET_TRADES_MESSAGE_TYPE,
    market_group,
)
from ..live.market_render import kline_message_fields, trade_rows_html
from ..upstream.binance_market import (
    KIND_BOOK,
    ROUTE_MARKET,
    ROUTE_PUBLIC,
    AggTrade,
    DepthUpdate,
    Kline,
    depth_stream,
    market_frame_parse,
    stream_parse,
    trade_stream,
)
from ..upstream.client import Backoff
from ..upstream.events import MalformedFrame
from ..upstream.klines import RestLimiter
from ..upstream.market_streams import StreamPool
from .market_books import BookKeeper
from .market_watch import MarketWatchers
from .tasks import log_task_end

logger = logging.getLogger(__name__)

TRADES_INTERVAL = 0.1
SLOW_INTERVAL = 0.25
HOUSEKEEPING_SECONDS = 1.0


class MarketFeed:
    """Market streams watched by some viewer: subscribed, kept, published to their groups."""

    def __init__(self, *, channel_layer: Any) -> None:
        self.channel_layer = channel_layer
        self.watchers = MarketWatchers(
            lease_seconds=settings.MARKET_WATCH_LEASE_SECONDS,
            grace_seconds=settings.MARKET_UNSUBSCRIBE_GRACE_SECONDS,
        )
        self.limiter = RestLimiter()
        self.books = BookKeeper(limiter=self.limiter, on_change=self._book_changed)
        options = {
            "backoff": Backoff(
                initial=settings.BINANCE_RECONNECT_INITIAL_SECONDS,
                cap=settings.BINANCE_RECONNECT_MAX_SECONDS,
            ),
            "ping_interval": settings.BINANCE_PING_INTERVAL_SECONDS,
            "ping_timeout": settings.BINANCE_PING_TIMEOUT_SECONDS,
        }
        self.pools = {
            ROUTE_MARKET: StreamPool(
                route=ROUTE_MARKET,
                base_url=settings.BINANCE_WS_BASE_URL,
                on_frame=self._on_frame,
                on_state=self._on_state,
                client_options=options,
            ),
            ROUTE_PUBLIC: StreamPool(
                route=ROUTE_PUBLIC,
                base_url=settings.BINANCE_WS_PUBLIC_URL,
                on_frame=self._on_frame,
                on_state=self._on_state,
                client_options=options,
            ),
        }
        self.frames = 0
        self.malformed = 0
        self._trades: dict[str, list[AggTrade]] = {}
        self._klines: dict[str, Kline] = {}
        self._books_dirty: set[str] = set()
        # The state of each book as last published: a change goes out at once.
        self._book_states: dict[str, str] = {}
        self._urgent = False
        self._states: dict[str, str] = {}
        self._states_dirty: set[str] = set()
        self._announce: set[str] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def _start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._publish_loop(), name="market-publish"),
                asyncio.create_task(self._housekeeping_loop(), name="market-housekeeping"),
            ]
            for task in self._tasks:
                task.add_done_callback(log_task_end)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for pool in self.pools.values():
            await pool.close()
        await self.books.close_all()

    def status(self) -> dict[str, Any]:
        return {
            "streams": {s: self.watchers.viewers(s) for s in sorted(self.watchers.subscribed)},
            "connections": {r: len(p.connections) for r, p in self.pools.items()},
            "frames": self.frames,
            "malformed": self.malformed,
            "resyncs": self.books.resyncs,
        }

    # -- watching ----------------------------------------------------------------------

    async def watch(self, *, hub: str, streams: dict[str, int]) -> None:
        """Take one hub's watched streams (a market.watch message)."""
        valid: dict[str, int] = {}
        for name, viewers in streams.items():
            try:
                stream_parse(name)
            except ValueError:
                logger.warning("Ignored a watch of %.60r: not a market stream", name)
                continue
            valid[name] = int(viewers) if isinstance(viewers, int) else 1
        changes = self.watchers.watch(hub=hub, streams=valid, now=time.monotonic())
        for stream in changes.subscribe:
            self._subscribe(stream)
        self._announce.update(changes.announce)
        self._start()
        self._wake.set()

    def _subscribe(self, stream: str) -> None:
        parsed = stream_parse(stream)
        logger.info("Market stream %s: first viewer, subscribing", stream)
        if parsed.kind == KIND_BOOK:
            self.books.open(parsed.symbol)
        self._set_state(stream, "connecting")
        self.pools[parsed.route].add(stream)

    async def _unsubscribe(self, stream: str) -> None:
        parsed = stream_parse(stream)
        logger.info("Market stream %s: no viewer for the grace period, unsubscribing", stream)
        self.pools[parsed.route].remove(stream)
        self._states.pop(stream, None)
        self._klines.pop(stream, None)
        if parsed.kind == KIND_BOOK:
            await self.books.close(parsed.symbol)
        elif stream == trade_stream(parsed.symbol):
            self._trades.pop(parsed.symbol, None)

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            changes = self.watchers.expire(now=time.monotonic())
            for stream in changes.unsubscribe:
                await self._unsubscribe(stream)

    # -- upstream ----------------------------------------------------------------------

    def _on_frame(self, raw: bytes) -> None:
        try:
            stream, event = market_frame_parse(raw)
        except MalformedFrame as exc:
            self.malformed += 1
            logger.warning("Dropped a malformed market frame (%s): %.120r", exc, raw)
            return
        self.frames += 1
        if stream not in self.watchers.subscribed:
            return  # already let go; the UNSUBSCRIBE is on its way
        if isinstance(event, AggTrade):
            trades = self._trades.setdefault(event.symbol, [])
            trades.append(event)
            del trades[:-MARKET_TAPE_ROWS]
        elif isinstance(event, Kline):
            self._klines[stream] = event
        elif isinstance(event, DepthUpdate):
            self.books.on_update(event)
        self._wake.set()

    async def _on_state(self, route: str, connected: bool, streams: frozenset[str]) -> None:
        for stream in streams:
            if stream not in self.watchers.subscribed:
                continue
            parsed = stream_parse(stream)
            if parsed.kind == KIND_BOOK:
                self.books.reset(parsed.symbol)
            self._set_state(stream, "live" if connected else "reconnecting")
        self._wake.set()

    def _set_state(self, stream: str, state: str) -> None:
        if self._states.get(stream) != state:
            self._states[stream] = state
            self._states_dirty.add(stream)

    def _book_changed(self, symbol: str) -> None:
        self._books_dirty.add(symbol)
        book = self.books.books.get(symbol)
        if book is not None and self._book_states.get(symbol) != book.state:
            # Resyncing (a gap) or synced again: shown now, not in the next slow round.
            self._book_states[symbol] = book.state
            self._urgent = True
        self._wake.set()

    # -- publishing --------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_slow = 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            messages = self._trade_messages()
            if loop.time() >= next_slow or self._announce or self._states_dirty or self._urgent:
                self._urgent = False
                next_slow = loop.time() + SLOW_INTERVAL
                self._slow_messages(messages)
            if messages:
                try:
                    await broadcast(channel_layer=self.channel_layer, messages=messages)
                except Exception:
                    logger.exception("Publishing market data failed")
            if self._books_dirty or self._klines:
                # Pending changes go in the next slow round at the latest.
                loop.call_later(max(0.0, next_slow - loop.time()), self._wake.set)
            await asyncio.sleep(TRADES_INTERVAL)

    def _trade_messages(self) -> dict[str, dict[str, Any]]:
        messages = {}
        for symbol, trades in self._trades.items():
            if trades:
                rows = trade_rows_html(trades)
                self._trades[symbol] = []
                messages[market_group(trade_stream(symbol))] = {
                    "type": MARKET_TRADES_MESSAGE_TYPE,
                    "rows": rows,
                }
        return messages

    def _slow_messages(self, messages: dict[str, dict[str, Any]]) -> None:
        """Add the live candles, changed books and states (one message per group)."""
        announce, self._announce = self._announce, set()
        for stream, kline in list(self._klines.items()):
            messages[market_group(stream)] = {
                "type": MARKET_KLINE_MESSAGE_TYPE,
                **kline_message_fields(kline),
            }
        self._klines.clear()
        dirty, self._books_dirty = self._books_dirty, set()
        dirty.update(stream_parse(s).symbol for s in announce if stream_parse(s).kind == KIND_BOOK)
        for symbol in dirty:
            body = self.books.message(symbol)
            if body is not None:
                messages[market_group(depth_stream(symbol))] = {
                    "type": MARKET_BOOK_MESSAGE_TYPE,
                    **body,
                }
        states, self._states_dirty = self._states_dirty | announce, set()
        for stream in states:
            group = market_group(stream)
            if group not in messages and stream in self._states:
                messages[group] = {
                    "type": MARKET_STATE_MESSAGE_TYPE,
                    "stream": stream,
                    "state": self._states[stream],
                }

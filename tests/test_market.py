"""Symbol-page market data end to end: viewer sockets → market hub → worker → the fake exchange.

Real parts throughout: the ASGI application's market socket, the real worker (as
`runworker liquidations` runs it), and the fake exchange on loopback, whose subscription
log is what Binance would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from liquidations.ingest.worker import worker_create
from liquidations.live.contracts import (
    CLOSE_NOT_FOUND,
    CLOSE_POLICY,
    MARKET_BOOK_MESSAGE_TYPE,
    market_group,
)
from liquidations.models import Symbol
from orderfox.asgi import application
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
HOST = (b"host", b"127.0.0.1:8000")  # the origin check compares the two
# Longer than the worker's housekeeping interval (1 s), so "within the grace period" can be
# told from "at the next housekeeping".
GRACE = 3.0
STREAMS = ("btcusdt@aggTrade", "btcusdt@depth@100ms", "btcusdt@kline_1m")
LEVEL = re.compile(
    r'<div class="book-level (bid|ask)"[^>]*><span class="num">([^<]*)</span>'
    r'<span class="num">([^<]*)</span>'
)


@pytest.fixture
async def market_worker(upstream_settings, fake_exchange):
    """The real worker against the fake exchange, with a short unsubscribe grace period."""
    upstream_settings.MARKET_UNSUBSCRIBE_GRACE_SECONDS = GRACE
    layer = get_channel_layer()
    await layer.flush()
    running = worker_create(channel_layer=layer)
    task = asyncio.create_task(running.arun())

    async def listed() -> bool:
        return await sync_to_async(Symbol.objects.filter(symbol="BTCUSDT").exists)()

    await eventually(listed, what="the symbol table from exchangeInfo")
    yield running
    await running.shutdown()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await layer.flush()


async def viewer(query: str = "timeframe=1m") -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, f"/ws/market/BTCUSDT/?{query}", headers=[ORIGIN, HOST]
    )
    connected, _ = await communicator.connect()
    assert connected
    return communicator


def subscribed(fake_exchange, streams=STREAMS):
    async def check() -> bool:
        return all(fake_exchange.market.subscribers(s) == 1 for s in streams)

    return check


async def test_one_subscription_per_stream_kept_while_a_viewer_remains_then_let_go(
    market_worker, fake_exchange
):
    market = fake_exchange.market
    first = await viewer()
    second = await viewer()
    await eventually(subscribed(fake_exchange), what="the three streams subscribed")
    await first.disconnect()
    await asyncio.sleep(GRACE + 1.5)
    for stream in STREAMS:
        assert market.subscribers(stream) == 1, stream
        assert market.subscribes(stream) == 1, stream
        assert market.unsubscribes(stream) == 0, stream

    left_at = time.time()
    await second.disconnect()

    async def let_go() -> bool:
        return all(market.unsubscribes(s) == 1 and market.subscribers(s) == 0 for s in STREAMS)

    await eventually(let_go, timeout=GRACE + 5, what="UNSUBSCRIBE after the grace period")
    gone_at = min(r.at for r in market.log if r.method == "UNSUBSCRIBE")
    assert gone_at - left_at >= GRACE
    # Two viewers, one subscription each; nothing runs for a symbol nobody watches.
    assert [market.subscribes(s) for s in STREAMS] == [1, 1, 1]
    assert market.active_streams() == []


async def test_a_viewer_returning_within_the_grace_period_causes_no_new_subscribe(
    market_worker, fake_exchange
):
    market = fake_exchange.market
    first = await viewer()
    await eventually(subscribed(fake_exchange), what="the three streams subscribed")
    await first.disconnect()
    await asyncio.sleep(GRACE / 2)
    back = await viewer()
    try:
        await asyncio.sleep(GRACE + 1.5)
        for stream in STREAMS:
            assert market.subscribes(stream) == 1, stream
            assert market.unsubscribes(stream) == 0, stream
            assert market.subscribers(stream) == 1, stream
    finally:
        await back.disconnect()


async def test_changing_the_timeframe_moves_the_kline_subscription_on_the_same_socket(
    market_worker, fake_exchange
):
    market = fake_exchange.market
    socket = await viewer()
    try:
        await eventually(subscribed(fake_exchange), what="the three streams subscribed")
        await socket.send_to(text_data='{"timeframe": "1h", "rounding": "1", "depth": 10}')
        await eventually(
            subscribed(fake_exchange, ("btcusdt@kline_1h",)), what="the 1h kline subscribed"
        )

        async def old_let_go() -> bool:
            return market.unsubscribes("btcusdt@kline_1m") == 1

        await eventually(old_let_go, timeout=GRACE + 5, what="the 1m kline let go")
        assert market.subscribes("btcusdt@aggTrade") == 1
    finally:
        await socket.disconnect()


async def test_bad_settings_close_the_socket_with_a_reason(market_worker):
    socket = await viewer()
    await socket.send_to(text_data='{"timeframe": "1m", "rounding": "0.15", "depth": 10}')
    closed = await socket.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == CLOSE_POLICY
    assert "multiple of the tick size" in closed["reason"]
    await socket.disconnect()


async def test_an_unknown_symbol_is_refused(market_worker):
    socket = WebsocketCommunicator(application, "/ws/market/NOSUCHUSDT/", headers=[ORIGIN, HOST])
    # Accepted, then closed with a code the page takes as final (a refused handshake
    # reaches a browser as 1006, which it retries).
    connected, _ = await socket.connect()
    assert connected
    closed = await socket.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == CLOSE_NOT_FOUND
    await socket.disconnect()


async def _book_frames(socket: WebsocketCommunicator, *, until) -> str:
    """Read frames until one carries a book for which until(html) holds; return it."""
    async with asyncio.timeout(15):
        while True:
            frame = await socket.receive_from(timeout=15)
            start = frame.find('<div id="order-book-levels"')
            if start >= 0 and until(frame[start:]):
                return frame[start:]


async def test_a_gap_in_the_depth_stream_resyncs_and_the_book_matches_the_exchange(
    market_worker, fake_exchange
):
    market = fake_exchange.market
    market.paused = True  # this test scripts every depth event
    layer = get_channel_layer()
    spy = await layer.new_channel()
    await layer.group_add(market_group("btcusdt@depth@100ms"), spy)
    socket = await viewer("timeframe=1m&rounding=0.1&depth=50")
    try:
        await eventually(subscribed(fake_exchange), what="the three streams subscribed")
        for _ in range(3):
            await market.depth_step("BTCUSDT")
        await eventually(_state(layer, spy, "synced"), what="the book synced")
        assert market.depth_requests == 1

        market.drop_next_depth("BTCUSDT")
        await market.depth_step("BTCUSDT")  # lost: the next event's pu shows the gap
        await market.depth_step("BTCUSDT")
        await eventually(_state(layer, spy, "resyncing"), what="the resync published")
        for _ in range(3):
            await market.depth_step("BTCUSDT")
        message = await _latest_book(layer, spy, update_id=market.market("BTCUSDT").update_id)
        assert message["state"] == "synced" and message["resyncs"] == 1
        assert market.depth_requests == 2

        bids, asks = market.market("BTCUSDT").book()
        assert message["bids_complete"] and message["asks_complete"]
        assert [(Decimal(p), Decimal(q)) for p, q in message["bids"]] == bids
        assert [(Decimal(p), Decimal(q)) for p, q in message["asks"]] == asks

        # The viewer's book at the tick size is the exchange's top 50, level by level,
        # and it says it was resynced.
        html = await _book_frames(
            socket, until=lambda h: f'data-event-ms="{message["event_ms"]}"' in h
        )
        assert 'data-resyncs="1"' in html and "resynced 1×" in html
        shown = LEVEL.findall(html)
        shown_bids = [(Decimal(p.replace(",", "")), Decimal(q)) for s, p, q in shown if s == "bid"]
        shown_asks = [(Decimal(p.replace(",", "")), Decimal(q)) for s, p, q in shown if s == "ask"]
        assert shown_bids == bids[:50]
        assert list(reversed(shown_asks)) == asks[:50]
    finally:
        await socket.disconnect()
        await layer.group_discard(market_group("btcusdt@depth@100ms"), spy)


def _state(layer, channel, state: str):
    async def check() -> bool:
        message = await layer.receive(channel)
        return message["type"] == MARKET_BOOK_MESSAGE_TYPE and message["state"] == state

    return check


async def _latest_book(layer, channel, *, update_id: int) -> dict:
    async with asyncio.timeout(15):
        while True:
            message = await layer.receive(channel)
            if message["type"] != MARKET_BOOK_MESSAGE_TYPE:
                continue
            if message["state"] == "synced" and message.get("last_update_id") == update_id:
                return message


async def test_trades_reach_the_tape_rendered_and_coloured_by_aggressor(
    market_worker, fake_exchange
):
    market = fake_exchange.market
    market.paused = True
    socket = await viewer()
    try:
        await eventually(subscribed(fake_exchange), what="the three streams subscribed")
        await market.trade("BTCUSDT", quantity=Decimal("2.000"), buyer_maker=False)
        await market.trade("BTCUSDT", quantity=Decimal("0.001"), buyer_maker=True)
        async with asyncio.timeout(10):
            while True:
                frame = await socket.receive_from(timeout=10)
                if "trade-rows" in frame and "trade-sell" in frame:
                    break
        rows = re.findall(r'<tr class="trade-row ([^"]*)"', frame)
        # Newest first; the $170k buy is a large one.
        assert rows[0].startswith("trade-sell") and "trade-buy trade-large" in rows[1]
    finally:
        await socket.disconnect()

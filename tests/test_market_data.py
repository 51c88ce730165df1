"""Market data pieces: the local order book's rules, its aggregation, stream leases, the
REST weight budget against the fake exchange, and the chart's time range."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from liquidations.ingest.market_watch import MarketWatchers
from liquidations.upstream.binance_market import (
    DepthSnapshot,
    DepthUpdate,
    market_frame_parse,
    stream_parse,
)
from liquidations.upstream.events import MalformedFrame
from liquidations.upstream.klines import RateLimited, RestLimiter, klines_fetch
from liquidations.upstream.order_book import (
    APPLIED,
    BUFFERED,
    GAP,
    STALE,
    OrderBook,
    book_aggregate,
)
from liquidations.web.candles import candles_cache_clear, candles_limiter
from tests.factories import liq, store, store_events, symbol_listed, venue_event

D = Decimal


def update(first: int, final: int, previous: int, bids=(), asks=()) -> DepthUpdate:
    return DepthUpdate(
        symbol="BTCUSDT",
        first_id=first,
        final_id=final,
        previous_final_id=previous,
        event_ms=1_766_880_000_000 + final,
        bids=[(D(p), D(q)) for p, q in bids],
        asks=[(D(p), D(q)) for p, q in asks],
    )


SNAPSHOT = DepthSnapshot(
    last_update_id=105,
    bids=[(D("100.0"), D("1")), (D("99.9"), D("2"))],
    asks=[(D("100.1"), D("3")), (D("100.2"), D("4"))],
)


def test_the_book_replays_its_buffer_on_the_snapshot_and_follows_pu():
    book = OrderBook(symbol="BTCUSDT")
    assert book.on_update(update(90, 100, 89, bids=[("99.8", "9")])) == BUFFERED
    assert book.on_update(update(101, 107, 100, bids=[("100.0", "5")])) == BUFFERED
    assert book.snapshot_apply(SNAPSHOT) == APPLIED
    # The event ending before the snapshot was dropped; the one spanning it applied.
    assert book.bids == {D("100.0"): D("5"), D("99.9"): D("2")}
    assert book.on_update(update(108, 110, 107, asks=[("100.1", "0")])) == APPLIED
    assert book.asks == {D("100.2"): D("4")}
    assert book.last_update_id == 110


def test_a_missing_event_is_a_gap_and_the_book_starts_over():
    book = OrderBook(symbol="BTCUSDT")
    book.on_update(update(101, 107, 100))
    book.snapshot_apply(SNAPSHOT)
    assert book.on_update(update(111, 115, 110)) == GAP  # pu 110, last u 107
    assert (book.synced, book.state, book.resyncs, book.bids) == (False, "resyncing", 1, {})
    assert "pu=110 after u=107" in book.last_gap
    # The event that showed the gap waits, buffered, for the next snapshot.
    snapshot = DepthSnapshot(last_update_id=113, bids=[(D("1"), D("1"))], asks=[])
    assert book.snapshot_apply(snapshot) == APPLIED and book.last_update_id == 115


def test_a_snapshot_older_than_the_buffer_is_refused():
    book = OrderBook(symbol="BTCUSDT")
    book.on_update(update(120, 125, 119))
    assert book.snapshot_apply(SNAPSHOT) == STALE  # 105 < U 120, and pu 119 != 105
    assert not book.synced and len(book.buffered) == 1


def test_an_event_continuing_the_snapshot_exactly_is_accepted():
    book = OrderBook(symbol="BTCUSDT")
    book.snapshot_apply(SNAPSHOT)
    assert book.on_update(update(106, 108, 105, bids=[("100.0", "7")])) == APPLIED
    assert book.bids[D("100.0")] == D("7")


def test_aggregation_sums_exactly_by_rounding_bids_down_and_asks_up():
    bids = [
        (D("100.9"), D("0.1")),
        (D("100.1"), D("0.2")),
        (D("99.95"), D("1.005")),
        (D("90.0"), D("3")),
    ]
    asks = [(D("101.05"), D("0.3")), (D("101.1"), D("0.0000001")), (D("109.99"), D("2"))]
    assert book_aggregate(bids, step=D("1"), depth=10, bids=True) == [
        (D("100"), D("0.3")),
        (D("99"), D("1.005")),
        (D("90"), D("3")),
    ]
    assert book_aggregate(asks, step=D("1"), depth=10, bids=False) == [
        (D("102"), D("0.3000001")),
        (D("110"), D("2")),
    ]
    assert book_aggregate(bids, step=D("10"), depth=1, bids=True) == [(D("100"), D("0.3"))]
    # At the tick size the levels are the book's own.
    assert book_aggregate(bids, step=D("0.05"), depth=50, bids=True) == bids
    # Levels cut short: the last bucket may miss some, so it is left out.
    assert book_aggregate(bids[:2], step=D("10"), depth=5, bids=True, complete=False) == []


def test_streams_are_kept_through_the_grace_period_and_leases_expire():
    watchers = MarketWatchers(lease_seconds=35, grace_seconds=30)
    changes = watchers.watch(hub="a", streams={"btcusdt@aggTrade": 2}, now=0)
    assert changes.subscribe == ["btcusdt@aggTrade"]
    assert watchers.watch(hub="b", streams={"btcusdt@aggTrade": 1}, now=1).subscribe == []
    assert watchers.viewers("btcusdt@aggTrade") == 3
    watchers.watch(hub="a", streams={}, now=2)
    assert watchers.expire(now=3).unsubscribe == []
    # Hub b died without a word: its lease runs out at 36, then the grace period.
    assert watchers.expire(now=36).unsubscribe == []
    assert watchers.expire(now=65).unsubscribe == []
    assert watchers.expire(now=66).unsubscribe == ["btcusdt@aggTrade"]
    assert watchers.subscribed == set()


def test_stream_names_and_frames():
    assert stream_parse("btcusdt@depth@100ms").route == "public"
    assert stream_parse("btcusdt@kline_4h").timeframe == "4h"
    with pytest.raises(ValueError):
        stream_parse("BTCUSDT@aggTrade")
    with pytest.raises(MalformedFrame):
        market_frame_parse(b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","s":"BTCUSDT"}}')


async def test_a_429_backs_off_and_nothing_is_asked_until_retry_after_has_passed(
    fake_exchange,
):
    market = fake_exchange.market
    limiter = RestLimiter()

    def fetch():
        return klines_fetch(
            base_url=fake_exchange.rest_base_url,
            symbol="BTCUSDT",
            timeframe="1m",
            limit=600,
            limiter=limiter,
        )

    assert len(await fetch()) == 600
    assert limiter.used_weight == 5  # from X-MBX-USED-WEIGHT-1M
    market.answer_429(1, retry_after=2)
    with pytest.raises(RateLimited):
        await fetch()
    asked = market.klines_requests
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        with pytest.raises(RateLimited):
            await fetch()
        await asyncio.sleep(0.1)
    assert market.klines_requests == asked, "asked again before Retry-After passed"
    await asyncio.sleep(2.1 - (time.monotonic() - started))
    assert len(await fetch()) == 600
    assert market.klines_requests == asked + 1
    assert market.bans == 0


def test_the_weight_budget_refuses_a_request_before_it_is_sent():
    limiter = RestLimiter(budget=10)
    limiter.record(status=200, headers={"x-mbx-used-weight-1m": "8"}, weight=5)
    with pytest.raises(RateLimited):
        limiter.check(5)
    limiter.check(2)


async def stored(*, trade_ms: int, usd: str) -> None:
    """Store one BTCUSDT liquidation of exactly `usd` dollars at trade_ms."""
    await sync_to_async(store)(liq(T=trade_ms, z="1", ap=usd))


@pytest.fixture
def chart_setup(upstream_settings):
    candles_cache_clear()
    yield upstream_settings
    candles_cache_clear()


@pytest.mark.django_db(transaction=True)
async def test_the_volume_covers_exactly_the_candles_time_range(chart_setup, fake_exchange):
    await sync_to_async(symbol_listed)("BTCUSDT", "BTC")
    client = AsyncClient()
    first = await client.get("/api/v1/market-chart/BTCUSDT/5m?limit=300")
    body = first.json()
    start, end = body["start_time"], body["end_time"]
    assert len(body["candles"]) == 300
    assert start == body["candles"][0]["time"] * 1000
    assert end == body["candles"][-1]["time"] * 1000 + 300_000
    # One liquidation just before the range, one at its first and one in its last candle.
    await stored(trade_ms=start - 1, usd="1000")
    await stored(trade_ms=start, usd="2000")
    await stored(trade_ms=end - 1, usd="300000")
    body = (await client.get("/api/v1/market-chart/BTCUSDT/5m?limit=300")).json()
    assert (body["start_time"], body["end_time"]) == (start, end)  # cached candles
    times = [b["time"] for b in body["volume"]]
    assert times == [start // 1000, (end - 300_000) // 1000]
    assert sum(D(b["total_volume"]) for b in body["volume"]) == D("302000.00")
    assert [m["time"] for m in body["markers"]] == [(end - 300_000) // 1000]


@pytest.mark.django_db(transaction=True)
async def test_without_binance_the_chart_has_the_volume_and_says_why(chart_setup, fake_exchange):
    await sync_to_async(symbol_listed)("BTCUSDT", "BTC")
    fake_exchange.market.klines_status = 503
    now_bucket = int(time.time()) // 3600 * 3600
    await stored(trade_ms=now_bucket * 1000, usd="5000")
    response = await AsyncClient().get("/api/v1/market-chart/BTCUSDT/1h?limit=200")
    body = response.json()
    assert response.status_code == 200 and body["candles"] == []
    assert "unavailable" in body["candles_error"] and "503" in body["candles_error"]
    assert body["end_time"] == (now_bucket + 3600) * 1000
    assert body["start_time"] == body["end_time"] - 200 * 3_600_000
    assert [b["time"] for b in body["volume"]] == [now_bucket]
    assert candles_limiter().requests_sent == 1


@pytest.mark.django_db(transaction=True)
async def test_bad_chart_parameters_answer_400(chart_setup):
    client = AsyncClient()
    for url, detail in (
        ("/api/v1/market-chart/BTCUSDT/2m", "timeframe"),
        ("/api/v1/market-chart/BTCUSDT/5m?limit=5000", "limit"),
        ("/api/v1/market-chart/BTCUSDT/5m?min_usd=lots", "min_usd"),
    ):
        response = await client.get(url)
        assert response.status_code == 400 and detail in response.json()["detail"]
    assert (await client.get("/api/v1/market-chart/NOSUCHUSDT/5m")).status_code == 404


@pytest.mark.django_db(transaction=True)
async def test_the_chart_volume_and_markers_follow_the_venue_filter(chart_setup, fake_exchange):
    await sync_to_async(symbol_listed)("BTCUSDT", "BTC")
    fake_exchange.market.klines_status = 503  # the volume comes without candles
    now_ms = int(time.time()) // 3600 * 3600 * 1000
    await stored(trade_ms=now_ms, usd="200000")  # Binance
    bybit = venue_event(venue="bybit", symbol="BTCUSDT", z="1", ap="300000", T=now_ms + 1)
    await sync_to_async(store_events)([bybit])
    client = AsyncClient()

    async def chart(query: str) -> dict:
        response = await client.get(f"/api/v1/market-chart/BTCUSDT/1h?min_usd=100000{query}")
        assert response.status_code == 200
        return response.json()

    def total(body: dict) -> D:
        return sum((D(b["total_volume"]) for b in body["volume"]), D(0))

    assert total(await chart("")) == D("500000.00")
    only_bybit = await chart("&venue=bybit")
    assert total(only_bybit) == D("300000.00")
    assert [m["usd"] for m in only_bybit["markers"]] == ["300000.00000000"]
    assert total(await chart("&venue=binance")) == D("200000.00")
    response = await client.get("/api/v1/market-chart/BTCUSDT/1h?venue=nasdaq")
    assert response.status_code == 400 and "venue" in response.json()["detail"]

"""Every venue in one record: the venue column and filter on pages, socket, history, CSV,
admin and API, the stats strip split per venue, and the volume API's `venue`."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.utils import timezone

from liquidations.live.broadcast import broadcast
from liquidations.live.contracts import CLOSE_POLICY
from liquidations.models import ConnectionGap
from liquidations.selectors.stats import liquidation_stats
from liquidations.services.rollup import liquidation_rollup_catch_up
from orderfox.asgi import application
from tests.factories import batch_messages, force_order, store, store_events, venue_event

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
HOST = (b"host", b"127.0.0.1:8000")  # the origin check compares the two
ROW_VENUES = re.compile(r'<tr id="liq-\d+"[^>]*data-venue="(\w+)"')


def three_rows(now_ms: int | None = None):
    """A BTCUSDT liquidation on each venue: Binance $100, Bybit $200, OKX $300 (longs)."""
    now_ms = now_ms or int(timezone.now().timestamp() * 1000)
    binance = store(force_order(symbol="BTCUSDT", z="1", ap="100", q="1", T=now_ms - 3000))
    others = store_events(
        [
            venue_event(venue="bybit", symbol="BTCUSDT", z="2", ap="100", T=now_ms - 2000),
            venue_event(
                venue="okx", symbol="BTCUSDT", instrument="BTC-USDT-SWAP", side="BUY",
                z="3", ap="100", T=now_ms - 1000,
            ),
        ]
    )  # fmt: skip
    return binance + others


@pytest.mark.django_db
def test_the_feed_shows_each_venue_and_filters_by_one(client):
    three_rows()
    html = client.get("/").content.decode()
    assert ROW_VENUES.findall(html) == ["okx", "bybit", "binance"]  # newest first
    assert '<td class="col-venue venue-okx">OKX</td>' in html
    assert '<th class="col-venue" scope="col">Venue</th>' in html
    filtered = client.get("/BTCUSDT/?venue=bybit").content.decode()
    assert ROW_VENUES.findall(filtered) == ["bybit"]
    assert (
        'data-venue="bybit"' in filtered
        and 'ws-connect="/ws/liquidations/BTCUSDT/?venue=bybit"' in filtered
    )
    # The other filters' links keep the venue.
    assert 'href="/BTCUSDT/?side=short&amp;venue=bybit"' in filtered
    bad = client.get("/?venue=kraken")
    assert bad.status_code == 200
    assert (
        "Ignored the venue: venue must be one of: all, binance, bybit, okx." in bad.content.decode()
    )
    assert ROW_VENUES.findall(bad.content.decode()) == ["okx", "bybit", "binance"]


@pytest.mark.django_db(transaction=True)
async def test_the_socket_takes_a_venue_filter_without_reconnecting():
    communicator = WebsocketCommunicator(application, "/ws/liquidations/", headers=[ORIGIN, HOST])
    assert (await communicator.connect())[0]
    try:
        await communicator.send_to(
            text_data='{"min_usd": "0", "side": "all", "venue": "okx", "since": null}'
        )
        stored = await database_sync_to_async(three_rows)()
        messages = await database_sync_to_async(batch_messages)(stored)
        await broadcast(channel_layer=get_channel_layer(), messages=messages)
        assert ROW_VENUES.findall(await communicator.receive_from()) == ["okx"]
        # Back to every venue, catching up from the start: all three, newest first.
        await communicator.send_to(text_data='{"min_usd": "0", "side": "all", "since": 0}')
        assert ROW_VENUES.findall(await communicator.receive_from()) == ["okx", "bybit", "binance"]
        await communicator.send_to(text_data='{"min_usd": "0", "side": "all", "venue": "ftx"}')
        closed = await communicator.receive_output()
        assert closed == {
            "type": "websocket.close",
            "code": CLOSE_POLICY,
            "reason": closed["reason"],
        }
        assert "venue must be one of" in closed["reason"]
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_history_and_its_csv_filter_by_venue(async_client):
    await database_sync_to_async(three_rows)()
    html = (await async_client.get("/history/?venue=okx")).content.decode()
    assert html.count('<td class="col-venue venue-okx">OKX</td>') == 1
    assert "venue-bybit" not in html.split("history-rows")[1]
    response = await async_client.get("/history/csv?venue=okx")
    body = "".join([chunk.decode() async for chunk in response.streaming_content])
    (row,) = list(csv.DictReader(io.StringIO(body)))
    assert (row["venue"], row["instrument"], row["symbol"]) == ("okx", "BTC-USDT-SWAP", "BTCUSDT")
    # What OKX does not publish stays empty, never invented.
    assert (row["order_type"], row["last_filled_quantity"], row["event_time_ms"]) == ("", "", "")
    assert (await async_client.get("/history/?venue=ftx")).status_code == 400


@pytest.mark.django_db
def test_admin_shows_and_filters_the_venue_of_rows_and_gaps(client):
    client.force_login(User.objects.create_superuser("root", password="x"))
    three_rows()
    now = timezone.now()
    ConnectionGap.objects.create(venue="okx", started_at=now - timedelta(seconds=5), ended_at=now)
    html = client.get("/admin/liquidations/liquidation/?venue__exact=bybit").content.decode()
    results = html.split('id="result_list"')[1].split("</table>")[0]
    assert "BTCUSDT" in results and ">Bybit<" in results and ">OKX<" not in results
    assert "?venue__exact=okx" in html  # the filter lists every venue
    gaps = client.get("/admin/liquidations/connectiongap/").content.decode()
    assert ">OKX<" in gaps


@pytest.mark.django_db
def test_api_items_carry_the_venue_and_filter_by_it(client):
    three_rows()
    items = client.get("/api/v1/liquidation-orders?symbol=BTCUSDT").json()
    assert [item["venue"] for item in items] == ["okx", "bybit", "binance"]
    (binance,) = client.get("/api/v1/liquidation-orders?venue=binance").json()
    assert (binance["venue"], binance["order_type"], binance["event_time"] is None) == (
        "binance",
        "LIMIT",
        False,
    )
    okx = client.get("/api/v1/liquidation-orders?venue=okx").json()[0]
    assert (okx["side"], okx["order_last_filled_quantity"], okx["event_time"]) == (
        "buy",
        None,
        None,
    )
    start = int((timezone.now() - timedelta(minutes=5)).timestamp() * 1000)
    page = client.get(f"/api/v1/liquidations/paged?venue=bybit&start_timestamp={start}").json()
    assert [item["venue"] for item in page["data"]] == ["bybit"]
    response = client.get(f"/api/v1/liquidations?venue=bybit&start_timestamp={start}")

    async def body() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    array = json.loads(async_to_sync(body)())
    assert [item["venue"] for item in array] == ["bybit"]
    refused = client.get("/api/v1/liquidations?venue=ftx")
    assert refused.status_code == 400
    assert refused.json() == {"detail": "venue must be one of: all, binance, bybit, okx"}


@pytest.mark.django_db
def test_volume_takes_a_venue(client):
    three_rows()
    start = int((timezone.now() - timedelta(hours=1)).timestamp() * 1000)

    def totals(query: str) -> tuple[float, float]:
        body = client.get(f"/api/v1/liquidation-volume/BTCUSDT/1h?start_time={start}{query}").json()
        return (
            sum(float(b["sell_volume"]) for b in body["data"]),
            sum(float(b["buy_volume"]) for b in body["data"]),
        )

    assert totals("") == (300.0, 300.0)  # longs: Binance $100 + Bybit $200; shorts: OKX $300
    assert totals("&venue=bybit") == (200.0, 0.0)
    assert totals("&venue=okx") == (0.0, 300.0)
    assert client.get("/api/v1/liquidation-volume/BTCUSDT/1h?venue=x").status_code == 400


@pytest.mark.django_db
def test_stats_split_each_window_per_venue_from_raw_rows_and_the_rollup(client):
    now = timezone.now()
    three_rows(int((now - timedelta(minutes=10)).timestamp() * 1000))
    for rolled in (False, True):
        if rolled:
            liquidation_rollup_catch_up(settled_before=now + timedelta(seconds=1))
        window = liquidation_stats(symbol="BTCUSDT", now=now)[0]
        assert (window.long_usd, window.short_usd) == (300, 300)
        assert [(v.venue, v.long_usd, v.short_usd) for v in window.venues] == [
            ("binance", 100, 0), ("bybit", 200, 0), ("okx", 0, 300)
        ]  # fmt: skip
    html = client.get("/").content.decode()
    assert '<li data-venue="bybit"><span class="venue-name">Bybit</span>' in html

"""Binance, Bybit and OKX at once: the worker against the fake exchange over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import Counter

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.db import connections

from liquidations.ingest.worker import worker_create
from liquidations.models import ConnectionGap, Liquidation
from tests.conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)
VENUES = ("binance", "bybit", "okx")


async def by_venue() -> Counter:
    rows = await sync_to_async(list)(Liquidation.objects.values_list("venue", flat=True))
    return Counter(rows)


def stored(expected: dict[str, int]):
    async def check() -> bool:
        counts = await by_venue()
        return all(counts[venue] >= n for venue, n in expected.items())

    return check


@pytest.fixture
def three_venues(upstream_settings):
    upstream_settings.LIQUIDATION_VENUES = list(VENUES)
    upstream_settings.BINANCE_EXCHANGE_INFO_RETRY_SECONDS = 0.05
    return upstream_settings


@pytest.fixture
async def worker(three_venues, fake_exchange):
    layer = get_channel_layer()
    await layer.flush()
    running = worker_create(channel_layer=layer)
    task = asyncio.create_task(running.arun())
    for venue in VENUES:
        await fake_exchange.wait_for_clients(1, venue=venue)
    await fake_exchange.wait_for_subscribed("bybit")
    await fake_exchange.wait_for_subscribed("okx")
    yield running
    await running.shutdown()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await layer.flush()


async def venue_status() -> dict[str, dict]:
    """Ask the worker for its status over the channel layer; return each venue's."""
    layer = get_channel_layer()
    reply_channel = await layer.new_channel()
    await layer.send("liquidations", {"type": "stream.status", "reply_channel": reply_channel})
    reply = await asyncio.wait_for(layer.receive(reply_channel), 5)
    return reply["venues"]


async def status_text() -> str:
    def call() -> str:
        out = io.StringIO()
        try:
            call_command("liquidations", "status", stdout=out)
        finally:
            connections.close_all()
        return out.getvalue()

    return await sync_to_async(call, thread_sensitive=False)()


async def test_three_venues_stream_at_once_each_normalised(worker, fake_exchange):
    sent = await fake_exchange.generate(rate=3000, count=60, venues=VENUES)
    assert sent == 60 and fake_exchange.events_by_venue == {v: 20 for v in VENUES}
    await eventually(stored({v: 20 for v in VENUES}), what="20 events of each venue")
    assert await by_venue() == {v: 20 for v in VENUES}

    rows = await sync_to_async(list)(
        Liquidation.objects.values("venue", "instrument", "symbol", "side", "order_type")
    )
    okx = [r for r in rows if r["venue"] == "okx"]
    assert all(r["instrument"].endswith("-SWAP") and "-" not in r["symbol"] for r in okx)
    assert all(r["order_type"] == "" for r in rows if r["venue"] != "binance")
    assert all(r["order_type"] == "LIMIT" for r in rows if r["venue"] == "binance")

    async def reported() -> bool:
        # Every trading contract of the fake Bybit (the status is a second old at most).
        return "31/31 topics subscribed" in await status_text()

    await eventually(reported, what="Bybit's subscriptions in the status")
    text = await status_text()
    for venue in VENUES:
        assert f"[{venue}]" in text
    assert "events stored:      60" in text
    assert text.count("state:              streaming") == 4  # the worker and each venue
    assert "liquidation-orders subscribed, 34 swaps listed" in text  # 32 linear, 2 inverse


async def test_malformed_frames_of_each_venue_are_counted_and_later_events_arrive(
    worker, fake_exchange
):
    sent = await fake_exchange.generate(rate=3000, count=30, venues=VENUES, malformed_every=5)
    await fake_exchange.send("okx", b"\xff\xfe not even utf-8")
    await fake_exchange.send("bybit", '{"topic":"allLiquidation.BTCUSDT","data":[{"s":7}]}')
    for venue in VENUES:
        await fake_exchange.send(venue, fake_exchange.venue_event(venue, symbol="ETHUSDT"))
    await eventually(stored({v: sent // 3 + 1 for v in VENUES}), what="events after bad frames")

    dropped = {name: venue["malformed_dropped"] for name, venue in (await venue_status()).items()}
    # One in every five events is followed by a malformed frame of the same venue.
    assert dropped == {"binance": 2, "bybit": 2 + 1, "okx": 2 + 1}
    assert await by_venue() == {v: sent // 3 + 1 for v in VENUES}


async def test_a_venue_down_leaves_the_others_streaming_and_its_gap_alone(
    worker, fake_exchange, three_venues
):
    await fake_exchange.take_down("okx")
    await fake_exchange.generate(rate=3000, count=20, venues=("binance", "bybit"))
    await eventually(stored({"binance": 10, "bybit": 10}), what="the other venues' events")

    async def okx_gap_open() -> bool:
        return await sync_to_async(ConnectionGap.objects.filter(venue="okx").exists)()

    await eventually(okx_gap_open, what="the OKX gap")
    assert "[okx]\nstate:              reconnecting" in await status_text()
    fake_exchange.bring_up("okx")
    await fake_exchange.wait_for_subscribed("okx")
    await fake_exchange.generate(rate=3000, count=3, venues=VENUES)
    await eventually(stored({"binance": 11, "bybit": 11, "okx": 1}), what="OKX back")

    gaps = await sync_to_async(list)(ConnectionGap.objects.values_list("venue", flat=True))
    assert set(gaps) == {"okx"}
    gap = await sync_to_async(ConnectionGap.objects.get)()
    assert gap.ended_at > gap.started_at


async def test_after_an_abrupt_drop_bybit_and_okx_resubscribe_and_replays_are_stored_once(
    worker, fake_exchange
):
    frames = [
        (venue, fake_exchange.venue_event(venue, symbol=symbol))
        for venue in ("bybit", "okx")
        for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    ]
    for venue, frame in frames:
        assert await fake_exchange.send(venue, frame) == 1
    await eventually(stored({"bybit": 3, "okx": 3}), what="first pass")

    await fake_exchange.drop_connections("bybit")
    await fake_exchange.drop_connections("okx")
    await fake_exchange.wait_for_connections(2, venue="bybit")
    await fake_exchange.wait_for_connections(2, venue="okx")
    await fake_exchange.wait_for_subscribed("bybit")
    await fake_exchange.wait_for_subscribed("okx")
    for venue, frame in frames:  # the venue replays what it sent before the drop
        assert await fake_exchange.send(venue, frame) == 1
    await fake_exchange.send("bybit", fake_exchange.venue_event("bybit", symbol="XRPUSDT"))

    async def replays_handled() -> bool:
        status = await venue_status()
        return sum(status[v]["duplicates_skipped"] for v in ("bybit", "okx")) >= 6

    await eventually(replays_handled, what="the replayed events")
    await eventually(stored({"bybit": 4, "okx": 3}), what="the new event")
    assert await by_venue() == {"bybit": 4, "okx": 3}
    gaps = await sync_to_async(list)(ConnectionGap.objects.values_list("venue", flat=True))
    assert sorted(gaps) == ["bybit", "okx"]


async def test_bybit_listing_over_several_pages_is_subscribed_whole(three_venues, fake_exchange):
    fake_exchange.bybit_page_limit = 10  # 32 contracts: four pages
    three_venues.LIQUIDATION_VENUES = ["bybit"]
    layer = get_channel_layer()
    running = worker_create(channel_layer=layer)
    task = asyncio.create_task(running.arun())
    try:
        await fake_exchange.wait_for_subscribed("bybit")
        (topics,) = fake_exchange.bybit_topics
        trading = [s for s in fake_exchange.symbols if s.status == "TRADING"]
        assert len(topics) == len(trading) == 31
        assert "allLiquidation.BTCPERP" in topics  # the USDC perpetual, by its Bybit name
        assert fake_exchange.rest_requests_by_path["/v5/market/instruments-info"] == 4
        await fake_exchange.send("bybit", fake_exchange.venue_event("bybit", symbol="BTCUSDC"))
        await eventually(stored({"bybit": 1}), what="the USDC perpetual's event")
        row = await sync_to_async(Liquidation.objects.get)()
        assert (row.instrument, row.symbol) == ("BTCPERP", "BTCUSDC")
    finally:
        await running.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_okx_connection_with_no_traffic_stays_open_because_the_app_pings(
    three_venues, fake_exchange
):
    # OKX cuts a connection that sent nothing for 30 s; the app pings after 20 s without
    # a frame. Scaled down twenty times: a 1.5 s cut, a 1 s ping, 4 s of silence.
    fake_exchange.okx_idle_timeout = 1.5
    three_venues.OKX_PING_INTERVAL_SECONDS = 1.0
    three_venues.BINANCE_PING_TIMEOUT_SECONDS = 1.0
    three_venues.LIQUIDATION_VENUES = ["okx"]
    layer = get_channel_layer()
    running = worker_create(channel_layer=layer)
    task = asyncio.create_task(running.arun())
    try:
        await fake_exchange.wait_for_subscribed("okx")
        await asyncio.sleep(4.0)
        (client,) = fake_exchange.clients("okx")
        assert client.pings >= 2
        assert fake_exchange.accepted_by_venue["okx"] == 1
        assert await sync_to_async(ConnectionGap.objects.count)() == 0
        await fake_exchange.send("okx", fake_exchange.venue_event("okx", symbol="BTCUSDT"))
        await eventually(stored({"okx": 1}), what="an event on the same connection")
    finally:
        await running.shutdown()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_non_ascii_contract_works_end_to_end(worker, fake_exchange):
    """Binance lists 币安人生USDT: stored, shown, pushed, searchable in the admin and API."""
    from urllib.parse import quote

    from channels.testing import WebsocketCommunicator
    from django.contrib.auth.models import User
    from django.test import Client

    from orderfox.asgi import application
    from tests.factories import force_order

    symbol = "币安人生USDT"
    path = quote(symbol)
    first = force_order(symbol=symbol, side="BUY", z="1000", ap="0.1", q="1000")
    assert await fake_exchange.broadcast(first) == 1
    await eventually(stored({"binance": 1}), what="the event stored")

    def pages() -> tuple[str, str, list, str]:
        client = Client()
        page = client.get(f"/{path}/").content.decode()
        api = client.get(f"/api/v1/liquidation-orders?symbol={path}").json()
        client.force_login(User.objects.create_superuser("root", password="x"))
        admin = client.get(f"/admin/liquidations/liquidation/?symbol={path}").content.decode()
        history = client.get(f"/history/?symbol={path}").content.decode()
        connections.close_all()
        return page, admin, api, history

    page, admin, api, history = await sync_to_async(pages, thread_sensitive=False)()
    assert f'<a href="/{path}/">{symbol}</a>' in page
    assert f'ws-connect="/ws/liquidations/{path}/"' in page
    assert f">{symbol}<" in admin.split('id="result_list"')[1]
    assert [(item["symbol"], item["venue"], item["side"]) for item in api] == [
        (symbol, "binance", "buy")
    ]
    assert f'<a href="/{path}/">{symbol}</a>' in history

    communicator = WebsocketCommunicator(
        application,
        f"/ws/liquidations/{path}/",
        headers=[(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")],
    )
    assert (await communicator.connect())[0]
    try:
        await fake_exchange.broadcast(force_order(symbol="BTCUSDT"))
        await fake_exchange.broadcast(force_order(symbol=symbol, z="2000", ap="0.1", q="2000"))
        while True:  # worker status and stats frames may come first
            text = await communicator.receive_from(timeout=10)
            if "liquidation-rows" in text:
                break
        assert f'data-symbol="{symbol}"' in text and "BTCUSDT" not in text
        assert "$200" in text
    finally:
        await communicator.disconnect()

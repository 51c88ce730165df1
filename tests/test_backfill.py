"""Backfill from another instance's JSON API, served on loopback by a real HTTP server."""

from __future__ import annotations

import asyncio
import logging
import socket
from decimal import Decimal

import pytest
from aiohttp import web
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from liquidations.ingest.backfill import backfill, backfill_run
from liquidations.ingest.pipeline import Ingest
from liquidations.models import Liquidation
from liquidations.upstream.events import MalformedFrame
from liquidations.upstream.orderfox_api import PAGED_PATH, item_to_event
from liquidations.web.api import liquidation_item
from tests.factories import DAY_BOUNDARY_S, liq, store

pytestmark = pytest.mark.django_db(transaction=True)

T0 = DAY_BOUNDARY_S * 1000


class Remote:
    """GET /api/v1/liquidations/paged answering pages keyed by the request's cursor."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, object]] = {}
        self.requests: list[dict[str, str]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.query))
        status, body = self.pages.get(request.query.get("cursor", ""), (404, {"detail": "?"}))
        return web.json_response(body, status=status)


@pytest.fixture
async def remote():
    server = Remote()
    app = web.Application()
    app.router.add_get(PAGED_PATH, server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


def _items(*payloads: dict) -> list[dict]:
    """Items exactly as this app's API renders them (stored, rendered, then deleted)."""
    rows = store(*payloads)
    items = [liquidation_item(row) for row in rows]
    Liquidation.objects.filter(pk__in=[row.pk for row in rows]).delete()
    return items


async def test_backfill_stores_what_is_missing_across_pages(remote):
    have, missing_1, missing_2 = await sync_to_async(_items)(
        liq(symbol="BTCUSDT", T=T0 + 1, z="0.5", ap="90000.1"),
        liq(symbol="ETHUSDT", T=T0 + 2, side="BUY", z="3", ap="3000.25"),
        liq(symbol="SOLUSDT", T=T0 + 3, z="10", ap="150"),
    )
    await sync_to_async(store)(liq(symbol="BTCUSDT", T=T0 + 1, z="0.5", ap="90000.1"))
    bad = {**missing_2, "side": "sideways"}
    remote.pages = {
        "": (200, {"data": [have, missing_1], "next_cursor": "page-2"}),
        "page-2": (200, {"data": [missing_2, bad], "next_cursor": None}),
    }
    result = await backfill(base_url=remote.url + "/")
    assert (result.pages, result.received, result.stored, result.malformed) == (2, 4, 2, 1)
    first, second = remote.requests
    assert int(first["end_timestamp"]) - int(first["start_timestamp"]) == 24 * 3600 * 1000
    assert first["limit"] == "1000" and "cursor" not in first
    assert second["cursor"] == "page-2"
    stored = await sync_to_async(list)(Liquidation.objects.order_by("trade_time"))
    assert [row.symbol for row in stored] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert [liquidation_item(row) for row in stored[1:]] == [missing_1, missing_2]


async def test_backfill_failure_is_logged_and_stores_nothing(remote, caplog):
    remote.pages = {"": (500, {"detail": "down for maintenance"})}
    with caplog.at_level(logging.WARNING, logger="liquidations.backfill"):
        assert await backfill_run(base_url=remote.url, since=None) is None
    assert "answered 500" in caplog.text and "down for maintenance" in caplog.text
    assert await sync_to_async(Liquidation.objects.count)() == 0
    remote.pages = {"": (200, {"items": []})}
    assert await backfill_run(base_url=remote.url, since=None) is None
    assert "not an object with a 'data' list" in caplog.text


async def test_unreachable_backfill_source_is_logged(caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with caplog.at_level(logging.WARNING, logger="liquidations.backfill"):
        assert await backfill_run(base_url=f"http://127.0.0.1:{port}", since=None) is None
    assert "Backfill from" in caplog.text and "failed" in caplog.text


def test_items_round_trip_to_the_same_event():
    (item,) = _items(liq(symbol="ETHUSDT", T=T0 + 5, side="BUY", z="1.25", ap="3012.45"))
    event = item_to_event(item)
    assert (event.symbol, event.side, event.trade_time_ms) == ("ETHUSDT", "BUY", T0 + 5)
    assert event.notional_usd == Decimal("3765.5625")
    with pytest.raises(MalformedFrame):
        item_to_event({**item, "order_trade_time": "yesterday"})
    with pytest.raises(MalformedFrame):
        item_to_event(["not", "an", "object"])


async def test_worker_backfills_at_start_while_streaming(upstream_settings, remote):
    (item,) = await sync_to_async(_items)(liq(symbol="XRPUSDT", T=T0 + 9, z="100", ap="2.2"))
    remote.pages = {"": (200, {"data": [item], "next_cursor": None})}
    upstream_settings.LIQUIDATION_API_BASE_URL = remote.url
    ingest = Ingest(channel_layer=get_channel_layer())
    await ingest.start()
    try:
        async with asyncio.timeout(15):
            while not await sync_to_async(Liquidation.objects.filter(symbol="XRPUSDT").exists)():
                await asyncio.sleep(0.05)
    finally:
        await ingest.stop()
        await ingest.aclose()
    assert len(remote.requests) == 1

"""/api/v1/liquidations as OrderFox's own client reads it, and the paged form beside it.

OrderFox's backend reads `GET {base}/liquidations?symbol=&timeframe=&start_timestamp=
&end_timestamp=` as a JSON array and buckets each item by `timestamp` (ms), `side` and
`cumulated_usd_size` itself. The contract checks below use only that documented item
shape, the way that client does, and compare its sums with /liquidation-volume.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from decimal import Decimal

import aiohttp
import orjson
import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from liquidations.ingest.backfill import backfill
from liquidations.models import Liquidation
from liquidations.upstream.events import ms_to_datetime
from liquidations.upstream.orderfox_api import ITEM_FIELDS
from liquidations.web import api_range
from liquidations.web.api import liquidation_item
from tests.factories import DAY_BOUNDARY_S, force_order, liq, roll_up, store

T0 = DAY_BOUNDARY_S * 1000
MINUTE = 60_000
CENT = Decimal("0.01")
RANGE = "/api/v1/liquidations"
PAGED = "/api/v1/liquidations/paged"


def orderfox_buckets(items: list, *, timeframe_ms: int) -> dict[int, tuple]:
    """Bucket items as OrderFox's client does: by timestamp, side and cumulated_usd_size."""
    buckets: dict[int, list] = defaultdict(lambda: [Decimal(0), Decimal(0), 0])
    for item in items:
        bucket = buckets[item["timestamp"] // timeframe_ms * timeframe_ms]
        usd = Decimal(str(item["cumulated_usd_size"]))
        if item["side"] == "buy":
            bucket[0] += usd
        elif item["side"] == "sell":
            bucket[1] += usd
        else:
            raise AssertionError(f"side {item['side']!r} is neither buy nor sell")
        bucket[2] += 1
    return {
        time: (buy.quantize(CENT), sell.quantize(CENT), count)
        for time, (buy, sell, count) in sorted(buckets.items())
    }


def volume_buckets(body: dict) -> dict[int, tuple]:
    return {
        bucket["timestamp_ms"]: (
            Decimal(bucket["buy_volume"]),
            Decimal(bucket["sell_volume"]),
            bucket["count"],
        )
        for bucket in body["data"]
    }


def contract_payloads() -> list[dict]:
    """Two symbols over 12 minutes across a 5m boundary: edges, ties, both sides."""
    payloads = []
    for n, (offset, side, z, ap) in enumerate(
        [
            (-1, "SELL", "0.003", "87010.55"),  # before the range: never served
            (0, "BUY", "0.5", "90000.1"),  # on the start: served
            (59_999, "SELL", "2", "100.25"),
            (MINUTE, "BUY", "1234", "1000"),
            (MINUTE, "SELL", "0.001", "87010.5"),  # a tie in trade time
            (4 * MINUTE + 59_999, "BUY", "150.1234", "88123.4567"),  # $13.2 M, 8 decimals
            (5 * MINUTE, "SELL", "0.07", "0.12345678"),
            (11 * MINUTE + 30_000, "SELL", "9", "3.3"),
            (12 * MINUTE, "BUY", "5", "5"),  # on the end: never served
        ]
    ):
        payloads.append(liq(symbol="FOXUSDT", side=side, T=T0 + offset, z=z, ap=ap))
        payloads.append(liq(symbol="HENUSDT", side="BUY", T=T0 + offset, z=str(n + 1), ap="7"))
    return payloads


async def read_array(async_client, **params) -> list:
    response = await async_client.get(RANGE, params)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return orjson.loads(b"".join([chunk async for chunk in response.streaming_content]))


async def check_orderfox_contract(async_client, *, rolled: bool = False) -> None:
    await sync_to_async(store)(*contract_payloads())
    if rolled:
        await sync_to_async(roll_up)(now_ms=T0 + 3600 * 1000)
    start, end = T0, T0 + 12 * MINUTE
    items = await read_array(
        async_client,
        symbol="FOXUSDT",
        timeframe="1m",
        start_timestamp=start,
        end_timestamp=end,
    )
    assert isinstance(items, list)
    stored = await sync_to_async(list)(
        Liquidation.objects.filter(
            symbol="FOXUSDT",
            trade_time__gte=ms_to_datetime(start),
            trade_time__lt=ms_to_datetime(end),
        ).order_by("trade_time", "id")
    )
    assert len(stored) == 7
    assert [item["timestamp"] for item in items] == [item["order_trade_time"] for item in items]
    assert [(i["timestamp"], i["event_time"]) for i in items] == [
        (int(row.trade_time.timestamp() * 1000), int(row.event_time.timestamp() * 1000))
        for row in stored
    ]
    for item, row in zip(items, stored, strict=True):
        assert isinstance(item["cumulated_usd_size"], float)
        # Exact up to a float's 15-17 significant digits.
        error = abs(Decimal(str(item["cumulated_usd_size"])) - row.notional_usd)
        assert error <= row.notional_usd * Decimal("1e-15")
        assert item["side"] in ("buy", "sell")
    for timeframe, timeframe_ms in (("1m", MINUTE), ("5m", 5 * MINUTE)):
        response = await async_client.get(
            f"/api/v1/liquidation-volume/FOXUSDT/{timeframe}",
            {"start_time": start, "end_time": end},
        )
        assert response.status_code == 200
        expected = volume_buckets(orjson.loads(response.content))
        assert orderfox_buckets(items, timeframe_ms=timeframe_ms) == expected, timeframe
        assert len(expected) == (5 if timeframe == "1m" else 3)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rolled", [False, True], ids=["rows", "rollup"])
async def test_orderfox_client_buckets_match_the_volume_api(async_client, rolled):
    await check_orderfox_contract(async_client, rolled=rolled)


@pytest.fixture
async def sync_thread_connections_closed():
    """Hand the shared sync thread's connection back, or it holds the test database open."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rolled", [False, True], ids=["rows", "rollup"])
async def test_pg_orderfox_client_buckets_match_the_volume_api(
    async_client, rolled, sync_thread_connections_closed
):
    await check_orderfox_contract(async_client, rolled=rolled)


@pytest.mark.django_db(transaction=True)
async def test_range_array_items_pin_every_field(async_client):
    payload = liq(symbol="ETHUSDT", side="BUY", T=T0 + 5, E=T0 + 900, z="1.250", ap="3012.4500")
    payload["o"].update({"q": "2.000", "p": "3010.10", "l": "0.750", "o": "LIMIT", "f": "GTC"})
    await sync_to_async(store)(payload)
    (item,) = await read_array(async_client, start_timestamp=T0, end_timestamp=T0 + 10)
    assert item == {
        "symbol": "ETHUSDT",
        "side": "buy",
        "order_type": "LIMIT",
        "time_in_force": "GTC",
        "original_quantity": "2",
        "price": "3010.1",
        "average_price": "3012.45",
        "order_status": "FILLED",
        "order_last_filled_quantity": "0.75",
        "order_filled_accumulated_quantity": "1.25",
        "order_trade_time": T0 + 5,
        "event_time": T0 + 900,
        "timestamp": T0 + 5,
        "cumulated_usd_size": 3765.5625,
        "venue": "binance",
    }


@pytest.mark.django_db(transaction=True)
async def test_range_array_streams_every_row_in_time_order_across_chunks(async_client, monkeypatch):
    monkeypatch.setattr(api_range, "ARRAY_CHUNK_ROWS", 2)
    # Five ties in one millisecond, split over chunks, and rows on both edges.
    payloads = [liq(symbol="TIESUSDT", T=T0 + 5, z=str(n)) for n in range(1, 6)]
    payloads += [liq(symbol="TIESUSDT", T=T0 + offset) for offset in (0, 9, 10)]
    await sync_to_async(store)(*payloads)
    response = await async_client.get(RANGE, {"start_timestamp": T0, "end_timestamp": T0 + 10})
    chunks = [chunk async for chunk in response.streaming_content]
    assert len(chunks) >= 5  # "[", four chunks of at most 2 items, "]"
    items = orjson.loads(b"".join(chunks))
    assert [(i["timestamp"], i["order_filled_accumulated_quantity"]) for i in items] == [
        (T0, "1"),
        *[(T0 + 5, str(n)) for n in range(1, 6)],
        (T0 + 9, "1"),
    ]
    assert await read_array(async_client, start_timestamp=T0 - 10, end_timestamp=T0) == []


@pytest.mark.django_db(transaction=True)
async def test_range_over_the_row_cap_is_refused_not_truncated(async_client, monkeypatch):
    assert api_range.ARRAY_MAX_ROWS == 200_000  # the number docs/api.md documents
    monkeypatch.setattr(api_range, "ARRAY_MAX_ROWS", 3)
    await sync_to_async(store)(*[liq(symbol="BTCUSDT", T=T0 + n) for n in range(4)])
    params = {"symbol": "BTCUSDT", "start_timestamp": T0, "end_timestamp": T0 + 3}
    assert len(await read_array(async_client, **params)) == 3
    params["end_timestamp"] = T0 + 4
    response = await async_client.get(RANGE, params)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "more than 3 liquidations in this range" in detail
    assert "/api/v1/liquidations/paged" in detail
    # The paged form serves the same range in full.
    body = (await async_client.get(PAGED, {**params, "limit": 1000})).json()
    assert [item["order_trade_time"] for item in body["data"]] == [T0 + n for n in range(4)]
    assert body["next_cursor"] is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"timeframe": "one minute"}, "timeframe must look like 1m, 5m, 1h or 1d"),
        ({"timeframe": "0m"}, "timeframe must look like"),
        ({"start_timestamp": "x"}, "start_timestamp must be an integer"),
        ({"end_timestamp": "1e12"}, "end_timestamp must be an integer"),
        (
            {"start_timestamp": T0 + 1, "end_timestamp": T0},
            "start_timestamp must be before end_timestamp",
        ),
    ],
)
def test_range_bad_parameters_answer_400(client, params, message):
    response = client.get(RANGE, params)
    assert response.status_code == 400
    assert message in response.json()["detail"]


@pytest.mark.django_db(transaction=True)
async def test_any_timeframe_orderfox_sends_is_accepted(async_client):
    await sync_to_async(store)(liq(symbol="BTCUSDT", T=T0 + 1))
    for timeframe in ("1m", "3m", "15m", "2h", "1d", "1w", "1M"):
        items = await read_array(
            async_client, symbol="btcusdt", timeframe=timeframe, start_timestamp=T0
        )
        assert [item["timestamp"] for item in items] == [T0 + 1], timeframe


@pytest.mark.django_db
def test_cursor_or_limit_on_the_range_path_choose_the_paged_form(client):
    """Instances from before the paged path backfill from /liquidations with limit."""
    store(*[liq(symbol="BTCUSDT", T=T0 + n) for n in range(3)])
    params = {"start_timestamp": T0, "end_timestamp": T0 + 3, "limit": 2}
    old = client.get(RANGE, params).json()
    new = client.get(PAGED, params).json()
    assert old == new
    assert [item["order_trade_time"] for item in new["data"]] == [T0, T0 + 1]
    assert "timestamp" not in new["data"][0]
    assert isinstance(new["data"][0]["cumulated_usd_size"], str)
    rest = client.get(RANGE, {**params, "cursor": new["next_cursor"]}).json()
    assert [item["order_trade_time"] for item in rest["data"]] == [T0 + 2]


# -- end to end: the app as users run it, an OrderFox-style client over HTTP ---------------


def live_frames() -> list[dict]:
    """60 liquidations over 6 symbols and 10 minutes, as Binance sends them."""
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BNBUSDT")
    return [
        force_order(
            symbol=symbols[n % 6],
            side="BUY" if n % 3 else "SELL",
            T=T0 + n * 10_000 + n % 7,
            q=f"{n + 1}.500",
            p=f"{100 + n}.10",
            ap=f"{100 + n}.25",
            l=f"{n % 4}.250",
            z=f"{n + 1}.000",
        )
        for n in range(60)
    ]


async def get_json(session: aiohttp.ClientSession, url: str, **params) -> object:
    async with session.get(url, params={k: str(v) for k, v in params.items()}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def wait_stored(session: aiohttp.ClientSession, base: str, count: int) -> None:
    async with asyncio.timeout(20):
        while len(await get_json(session, f"{base}/liquidation-orders", limit=1000)) < count:
            await asyncio.sleep(0.1)


def check_orders_equal_frames(orders: list, frames: list[dict]) -> None:
    """Every field of /liquidation-orders equals what the exchange sent."""
    by_time = {frame["o"]["T"]: frame for frame in frames}
    assert len(orders) == len(frames)
    for item in orders:
        sent = by_time[item["order_trade_time"]]
        order = sent["o"]
        assert item["event_time"] == sent["E"]
        assert (item["symbol"], item["side"]) == (order["s"], order["S"].lower())
        assert (item["order_type"], item["time_in_force"]) == (order["o"], order["f"])
        assert item["order_status"] == order["X"]
        for key, field in (
            ("original_quantity", "q"),
            ("price", "p"),
            ("average_price", "ap"),
            ("order_last_filled_quantity", "l"),
            ("order_filled_accumulated_quantity", "z"),
        ):
            assert Decimal(item[key]) == Decimal(order[field]), key
        usd = Decimal(order["z"]) * Decimal(order["ap"])
        assert Decimal(item["cumulated_usd_size"]) == usd
        assert set(item) == {*(key for key, _, _ in ITEM_FIELDS), "cumulated_usd_size", "venue"}


@pytest.mark.django_db(transaction=True)
async def test_orderfox_client_and_backfill_read_a_live_instance(live_app):
    """Orders, the array with its bucket sums, and a backfill, all over real HTTP."""
    frames = live_frames()
    await live_app.exchange.wait_for_clients(1, timeout=20)
    for frame in frames:
        await live_app.exchange.broadcast(frame)
    base = live_app.url + "api/v1"
    start, end = T0, T0 + 10 * MINUTE
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await wait_stored(session, base, len(frames))
        orders = await get_json(session, f"{base}/liquidation-orders", limit=1000)
        check_orders_equal_frames(orders, frames)
        served = 0
        for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "BNBUSDT"):
            items = await get_json(
                session,
                f"{base}/liquidations",
                symbol=symbol,
                timeframe="1m",
                start_timestamp=start,
                end_timestamp=end,
            )
            assert isinstance(items, list) and len(items) == 10
            served += len(items)
            for timeframe, timeframe_ms in (("1m", MINUTE), ("5m", 5 * MINUTE)):
                volume = await get_json(
                    session,
                    f"{base}/liquidation-volume/{symbol}/{timeframe}",
                    start_time=start,
                    end_time=end,
                )
                assert orderfox_buckets(items, timeframe_ms=timeframe_ms) == volume_buckets(
                    volume
                ), (symbol, timeframe)
        assert served == len(frames)
    # Another instance (this test's database) backfills from the live one's paged form.
    result = await backfill(
        base_url=live_app.url, since=ms_to_datetime(start), until=ms_to_datetime(end)
    )
    assert (result.received, result.stored, result.malformed) == (60, 60, 0)
    copied = await sync_to_async(list)(Liquidation.objects.order_by("-trade_time", "-id"))
    assert [liquidation_item(row) for row in copied] == sorted(
        orders, key=lambda item: item["order_trade_time"], reverse=True
    )


@pytest.mark.django_db
def test_a_paged_page_reads_its_rows_in_one_query_and_serves_every_item_key(client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    store(*[liq(symbol="BTCUSDT", T=T0 + n) for n in range(5)])
    params = {"symbol": "BTCUSDT", "start_timestamp": T0, "end_timestamp": T0 + 5}
    with CaptureQueriesContext(connection) as queries:
        body = client.get(PAGED, params).json()
    # The page's rows, the item's columns only: no query per row for a deferred field.
    # (Before it, the symbol is checked: listed, or seen in the record.)
    rows = [q["sql"] for q in queries if q["sql"].startswith('SELECT "liquidations_liquidation"')]
    assert len(rows) == 1, [q["sql"][:80] for q in queries]
    assert "received_at" not in rows[0]
    # Each item as a fully loaded row gives it.
    whole = [liquidation_item(row) for row in Liquidation.objects.order_by("trade_time")]
    assert body["data"] == whole
    for item in body["data"]:
        assert item["event_time"] is not None

"""History's amount filter, read through the size-tier indexes (selectors/tiers.py): rare
and common amounts, on a tier's bound or inside a tier, give the rows the filters name in
(trade_time, id) order, a keyset page at a time, with every other filter, newest or oldest
first, on SQLite and PostgreSQL; and the queries use the tier indexes."""

from __future__ import annotations

import csv
import io
import itertools
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from liquidations.selectors.history import Cursor, HistoryFilters, liquidation_page
from liquidations.upstream.events import datetime_to_ms
from tests.factories import DAY_BOUNDARY_S, liq, store, store_events, venue_event

T0 = DAY_BOUNDARY_S * 1000


def _record(*, with_bybit: bool = False) -> list:
    """Small rows every 10 ms, big ones scattered, some sharing a millisecond."""
    payloads = []
    for n in range(60):
        symbol = ("BTCUSDT", "ETHUSDT", "DOGEUSDT")[n % 3]
        side = "SELL" if n % 4 else "BUY"
        payloads.append(liq(symbol=symbol, side=side, T=T0 + 10 * n, z="1", ap=str(100 + n)))
    # Big ones: $6M, $2M and $1M, three of them at one millisecond (ties broken by id).
    for n, (symbol, side, ap, t) in enumerate(
        [
            ("BTCUSDT", "SELL", "6000000", 55),
            ("BTCUSDT", "BUY", "2000000", 55),
            ("ETHUSDT", "SELL", "1000000", 55),
            ("ETHUSDT", "BUY", "6000000", 301),
            ("DOGEUSDT", "SELL", "2000000", 302),
            ("BTCUSDT", "SELL", "1000000", 599),
            ("BTCUSDT", "BUY", "6000000", 0),
        ]
    ):
        payloads.append(liq(symbol=symbol, side=side, T=T0 + t, z=str(n + 1), ap=ap))
    stored = store(*payloads)
    if not with_bybit:
        return stored
    # Bybit's big ones beside Binance's: a venue filter must hold on the amount path too.
    bybit = [
        venue_event(venue="bybit", symbol="BTCUSDT", side="SELL", z="1", ap="7000000", T=T0 + 56),
        venue_event(venue="bybit", symbol="ETHUSDT", side="BUY", z="2", ap="1000000", T=T0 + 300),
    ]
    return stored + store_events(bybit)


def _walk(filters: HistoryFilters, *, limit: int, newest_first: bool) -> list[int]:
    seen, cursor = [], None
    while True:
        page, cursor = liquidation_page(
            filters=filters, cursor=cursor, limit=limit, newest_first=newest_first
        )
        assert len(page) <= limit
        seen += [row.pk for row in page]
        if cursor is None:
            return seen


def _expected(rows, filters: HistoryFilters, *, newest_first: bool) -> list[int]:
    kept = [
        row
        for row in rows
        if (not filters.symbol or row.symbol == filters.symbol)
        and (not filters.side or row.side == filters.side)
        and (not filters.venue or row.venue == filters.venue)
        and (not filters.min_usd or row.notional_usd >= filters.min_usd)
        and (not filters.start or row.trade_time >= filters.start)
        and (not filters.end or row.trade_time < filters.end)
    ]
    kept.sort(key=lambda row: (row.trade_time, row.pk), reverse=newest_first)
    return [row.pk for row in kept]


COMBINATIONS = [
    {"min_usd": Decimal(5_000_000)},
    {"min_usd": Decimal(1_000_000)},
    {"min_usd": Decimal(150)},
    # Inside a tier ($1M-$2.5M, $5M-$10M, below $1,000): that tier is filtered by amount.
    {"min_usd": Decimal(1_500_000)},
    {"min_usd": Decimal(6_000_000)},
    {"min_usd": Decimal("130.5")},
    {"min_usd": Decimal(2_000_000), "side": "SELL"},
    {"min_usd": Decimal(100_000_000)},  # nothing that big: an empty result
    {"symbol": "BTCUSDT", "min_usd": Decimal(1_000_000)},
    {"symbol": "ETHUSDT", "side": "BUY", "min_usd": Decimal(1_000_000)},
    {"symbol": "XRPUSDT", "min_usd": Decimal(1_000_000)},  # a symbol never seen
    {"side": "SELL", "min_usd": Decimal(1_000_000)},
    {"min_usd": Decimal(1_000_000), "start_ms": 55, "end_ms": 302},
    {"symbol": "BTCUSDT", "side": "SELL", "min_usd": Decimal(130), "start_ms": 100},
    {"min_usd": Decimal(1_000_000), "end_ms": 55},  # end is exclusive
    {"venue": "bybit", "min_usd": Decimal(1_000_000)},
    {"venue": "binance", "symbol": "BTCUSDT", "min_usd": Decimal(5_000_000)},
]


def _filters(spec: dict) -> HistoryFilters:
    spec = dict(spec)
    start, end = spec.pop("start_ms", None), spec.pop("end_ms", None)
    return HistoryFilters(
        **spec,
        start=Cursor(T0 + start, 1).trade_time if start is not None else None,
        end=Cursor(T0 + end, 1).trade_time if end is not None else None,
    )


def check_amount_pages(*, limits=(1, 2, 3, 50)) -> None:
    rows = _record(with_bybit=True)
    for spec, limit, newest_first in itertools.product(COMBINATIONS, limits, (True, False)):
        filters = _filters(spec)
        expected = _expected(rows, filters, newest_first=newest_first)
        got = _walk(filters, limit=limit, newest_first=newest_first)
        assert got == expected, (spec, limit, newest_first)


def check_amount_page_takes_two_queries() -> None:
    _record()
    filters = HistoryFilters(min_usd=Decimal(5_000_000))
    with CaptureQueriesContext(connection) as queries:
        page, cursor = liquidation_page(filters=filters, limit=2)
    # The page's ids from the tiers at or above $5M, then its rows by id.
    assert len(queries) == 2
    assert "tier_12" in queries[0]["sql"] and "tier_11" not in queries[0]["sql"]
    # >= $5M: 6M at 599, 10M at 302, 24M at 301, 6M at 55 and 42M at 0 (ms after T0).
    assert [_ms(row) for row in page] == [599, 302]
    page, cursor = liquidation_page(filters=filters, cursor=cursor, limit=2)
    assert [_ms(row) for row in page] == [301, 55]
    page, cursor = liquidation_page(filters=filters, cursor=cursor, limit=2)
    assert [(_ms(row), row.notional_usd) for row in page] == [(0, Decimal(42_000_000))]
    assert cursor is None


def check_the_tier_indexes_serve_the_walk() -> None:
    """EXPLAIN the walk's queries: each tier is an index range (the expression matched)."""
    _record(with_bybit=True)
    for spec, index in (
        ({"min_usd": Decimal(1_500_000)}, "liquidation_tier_time"),
        ({"min_usd": Decimal(300_000), "venue": "bybit"}, "liquidation_tier_time"),
        ({"symbol": "BTCUSDT", "min_usd": Decimal(1_500_000)}, "liquidation_symbol_tier_time"),
    ):
        with CaptureQueriesContext(connection) as queries:
            liquidation_page(filters=_filters(spec), limit=50)
        walks = [q["sql"] for q in queries if "tier_" in q["sql"]]
        assert len(walks) == 2, spec  # the whole tiers, then the tier the amount falls in
        for sql in walks:
            plan = _plan(sql)
            assert index in plan, (spec, plan)


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql)
            return "\n".join(str(row[-1]) for row in cursor.fetchall())
        # A few test rows: a sequential scan is cheaper, so the planner is told not to.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("EXPLAIN " + sql)
        return "\n".join(row[0] for row in cursor.fetchall())


def _ms(row) -> int:
    return datetime_to_ms(row.trade_time) - T0


@pytest.mark.django_db
def test_amount_pages_hold_exactly_the_matching_rows_in_order():
    check_amount_pages()


@pytest.mark.django_db
def test_an_amount_page_is_found_by_tier_then_fetched_by_id():
    check_amount_page_takes_two_queries()


@pytest.mark.django_db
def test_the_tier_indexes_serve_the_walk():
    check_the_tier_indexes_serve_the_walk()


@pytest.mark.production
@pytest.mark.django_db
def test_pg_amount_pages_hold_exactly_the_matching_rows_in_order():
    check_amount_pages(limits=(1, 3, 50))


@pytest.mark.production
@pytest.mark.django_db
def test_pg_an_amount_page_is_found_by_tier_then_fetched_by_id():
    check_amount_page_takes_two_queries()


@pytest.mark.production
@pytest.mark.django_db
def test_pg_the_tier_indexes_serve_the_walk():
    check_the_tier_indexes_serve_the_walk()


@pytest.mark.django_db
def test_history_page_of_a_rare_amount(client):
    rows = _record()
    big = sorted(
        (row for row in rows if row.notional_usd >= 5_000_000),
        key=lambda row: (row.trade_time, row.pk),
        reverse=True,
    )
    response = client.get("/history/?min_usd=5000000")
    assert response.status_code == 200
    assert [int(i) for i in re.findall(r'data-id="(\d+)"', response.content.decode())] == [
        row.pk for row in big
    ]


@pytest.mark.django_db(transaction=True)
async def test_csv_of_a_rare_amount(async_client):
    from asgiref.sync import sync_to_async

    rows = await sync_to_async(_record)()
    response = await async_client.get("/history/csv?min_usd=5000000&side=long")
    assert response.status_code == 200
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    big_longs = sorted(
        (row for row in rows if row.notional_usd >= 5_000_000 and row.side == "SELL"),
        key=lambda row: (row.trade_time, row.pk),
        reverse=True,
    )
    lines = list(csv.reader(io.StringIO(body)))
    assert [int(line[0]) for line in lines[1:]] == [row.pk for row in big_longs]


@pytest.mark.django_db
def test_dashboard_of_a_rare_amount_reads_the_tier_index(client):
    rows = _record(with_bybit=True)
    big = sorted(
        (row for row in rows if row.notional_usd >= 5_000_000 and row.venue == "bybit"),
        key=lambda row: (row.trade_time, row.pk),
        reverse=True,
    )
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/?min_usd=5000000&venue=bybit")
    assert response.status_code == 200
    shown = [int(i) for i in re.findall(r'<tr id="liq-(\d+)"', response.content.decode())]
    assert shown == [row.pk for row in big] and shown
    # Found by the tiers at or above $5M, not by walking the record by time.
    assert any("tier_12" in query["sql"] for query in queries)

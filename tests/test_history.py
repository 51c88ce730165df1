"""/history/: filters, keyset pages with ties in trade_time, and the streamed CSV."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest

from liquidations.selectors.history import Cursor, HistoryFilters, liquidation_page
from liquidations.web import exports
from liquidations.web import history as history_views
from tests.factories import DAY_BOUNDARY_S, liq, store

T0 = DAY_BOUNDARY_S * 1000


def _ids(response) -> list[int]:
    return [int(i) for i in re.findall(r'data-id="(\d+)"', response.content.decode())]


def _older_link(response) -> str | None:
    match = re.search(r'<a rel="next" class="older" href="([^"]+)"', response.content.decode())
    return match.group(1).replace("&amp;", "&") if match else None


def check_keyset_pages_with_ties() -> None:
    """Newest first through ties: every row once, in (trade_time, id) descending order."""
    payloads = [liq(symbol="TIESUSDT", T=T0 + 5, z=str(n)) for n in range(1, 8)]  # 7 ties
    payloads += [liq(symbol="TIESUSDT", T=T0 + t) for t in (1, 2, 9)]
    stored = store(*payloads)
    expected = [row.pk for row in sorted(stored, key=lambda r: (r.trade_time, r.pk))][::-1]
    for limit in (1, 2, 3, 4, 10, 11):
        seen, cursor = [], None
        while True:
            page, cursor = liquidation_page(
                filters=HistoryFilters(symbol="TIESUSDT"), cursor=cursor, limit=limit
            )
            seen += [row.pk for row in page]
            if cursor is None:
                break
        assert seen == expected, limit


def check_filters() -> None:
    store(
        liq(symbol="BTCUSDT", side="SELL", T=T0 + 1, z="1", ap="50000"),  # $50,000 long
        liq(symbol="BTCUSDT", side="BUY", T=T0 + 2, z="1", ap="500"),  # $500 short
        liq(symbol="ETHUSDT", side="SELL", T=T0 + 3, z="10", ap="3000"),  # $30,000 long
        liq(symbol="ETHUSDT", side="BUY", T=T0 + 60_000, z="1", ap="3000"),  # $3,000 short
    )

    def times(**kw) -> list[int]:
        page, _ = liquidation_page(filters=HistoryFilters(**kw), limit=50)
        return [int(row.trade_time.timestamp() * 1000) - T0 for row in page]

    assert times() == [60_000, 3, 2, 1]
    assert times(symbol="BTCUSDT") == [2, 1]
    assert times(side="SELL") == [3, 1]
    assert times(min_usd=Decimal(3000)) == [60_000, 3, 1]
    assert times(side="BUY", min_usd=Decimal(1000)) == [60_000]
    start, end = Cursor(T0 + 2, 1).trade_time, Cursor(T0 + 60_000, 1).trade_time
    assert times(start=start, end=end) == [3, 2]  # [start, end)


@pytest.mark.django_db
def test_keyset_pages_with_ties_in_trade_time():
    check_keyset_pages_with_ties()


@pytest.mark.django_db
def test_history_filters_narrow_the_record():
    check_filters()


@pytest.mark.production
@pytest.mark.django_db
def test_pg_keyset_pages_with_ties_in_trade_time():
    check_keyset_pages_with_ties()


@pytest.mark.production
@pytest.mark.django_db
def test_pg_history_filters_narrow_the_record():
    check_filters()


@pytest.mark.django_db
def test_history_page_walks_older_links_keeping_filters(client, monkeypatch):
    monkeypatch.setattr(history_views, "HISTORY_PAGE_ROWS", 3)
    stored = store(
        *[liq(symbol="BTCUSDT", T=T0 + 7, z=str(n)) for n in range(1, 5)],
        *[liq(symbol="BTCUSDT", T=T0 + t) for t in (1, 3, 11)],
        liq(symbol="ETHUSDT", T=T0 + 8),
    )
    btc = [r for r in stored if r.symbol == "BTCUSDT"]
    expected = [r.pk for r in sorted(btc, key=lambda r: (r.trade_time, r.pk), reverse=True)]
    url, seen = "/history/?symbol=btcusdt", []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        page_ids = _ids(response)
        assert len(page_ids) <= 3
        seen += page_ids
        url = _older_link(response)
        if url:
            assert "symbol=btcusdt" in url
    assert seen == expected
    assert 'href="/history/csv?symbol=btcusdt"' in response.content.decode()


@pytest.mark.django_db
def test_history_bad_cursor_and_bad_filters_answer_400(client):
    response = client.get("/history/?cursor=bm90LWEtY3Vyc29y")  # "not-a-cursor"
    assert response.status_code == 400
    assert "This page link is not valid" in response.content.decode()
    response = client.get("/history/?min_usd=-5&side=sideways")
    assert response.status_code == 400
    body = response.content.decode()
    assert "Ensure this value is greater than or equal to 0" in body
    assert "Select a valid choice" in body
    response = client.get("/history/?start=2025-12-28T10:00&end=2025-12-28T09:00")
    assert response.status_code == 400
    assert "The start must be before the end." in response.content.decode()


@pytest.mark.django_db
def test_history_page_escapes_what_it_echoes(client):
    # Any printable name can be a symbol (venues list 币安人生USDT): echoed, escaped.
    response = client.get("/history/?symbol=%3Cscript%3Ealert(1)%3C/script%3E")
    assert response.status_code == 200
    assert "<script>alert(1)" not in response.content.decode()
    assert "&lt;script&gt;alert(1)" in response.content.decode()
    refused = client.get("/history/?symbol=%3Cscript%3E%0Aalert(1)")
    assert refused.status_code == 400
    assert "<script>" not in refused.content.decode()


@pytest.mark.django_db
def test_history_is_linked_from_the_header(client):
    assert 'href="/history/"' in client.get("/").content.decode()


@pytest.mark.django_db(transaction=True)
async def test_csv_streams_every_filtered_row_in_chunks(async_client, monkeypatch):
    from asgiref.sync import sync_to_async

    monkeypatch.setattr(exports, "CSV_CHUNK_ROWS", 2)
    stored = await sync_to_async(store)(
        liq(symbol="BTCUSDT", side="SELL", T=T0 + 1, z="0.5", ap="90000.1"),
        liq(symbol="BTCUSDT", side="BUY", T=T0 + 2, z="1", ap="10"),
        liq(symbol="BTCUSDT", side="SELL", T=T0 + 2, z="2", ap="10"),
        liq(symbol="BTCUSDT", side="SELL", T=T0 + 3, z="3", ap="10"),
        liq(symbol="BTCUSDT", side="SELL", T=T0 + 4, z="4", ap="10"),
        liq(symbol="ETHUSDT", side="SELL", T=T0 + 5, z="5", ap="10"),
    )
    response = await async_client.get("/history/csv?symbol=BTCUSDT&side=long")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="liquidations-')
    chunks = [chunk async for chunk in response.streaming_content]
    assert len(chunks) >= 3  # header, then one chunk per keyset page of 2 rows
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert rows[0] == list(exports.CSV_HEADER)
    longs = [r for r in stored if r.symbol == "BTCUSDT" and r.side == "SELL"]
    longs.sort(key=lambda r: (r.trade_time, r.pk), reverse=True)
    assert [int(r[0]) for r in rows[1:]] == [r.pk for r in longs]
    first = dict(zip(rows[0], rows[-1], strict=True))
    assert first["trade_time"] == "2025-12-28T00:00:00.001+00:00"
    assert first["trade_time_ms"] == str(T0 + 1)
    assert (first["symbol"], first["side"], first["position_liquidated"]) == (
        "BTCUSDT",
        "SELL",
        "long",
    )
    assert Decimal(first["usd"]) == Decimal("45000.05")
    assert Decimal(first["filled_quantity"]) == Decimal("0.5")


@pytest.mark.django_db(transaction=True)
async def test_csv_refuses_bad_filters(async_client):
    response = await async_client.get("/history/csv?min_usd=lots")
    assert response.status_code == 400
    assert b"min_usd" in response.content


@pytest.mark.django_db(transaction=True)
async def test_csv_cells_never_start_a_formula(async_client):
    from asgiref.sync import sync_to_async

    payload = liq(symbol="BTCUSDT", T=T0 + 1)
    payload["o"]["o"] = "=HYPERLINK(1)"
    await sync_to_async(store)(payload)
    response = await async_client.get("/history/csv")
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    (row,) = list(csv.DictReader(io.StringIO(body)))
    assert row["order_type"] == "'=HYPERLINK(1)"

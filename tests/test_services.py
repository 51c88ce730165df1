from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from liquidations.ingest.store import store_and_render
from liquidations.models import Liquidation
from liquidations.services import liquidations as liquidations_store
from liquidations.services.liquidations import liquidation_store_new
from liquidations.upstream.binance import parse_frame
from tests.factories import batch_messages as liquidation_messages_of
from tests.factories import force_order, frame, symbol_listed
from tests.factories import store_events as liquidation_store_batch

pytestmark = pytest.mark.django_db


def _events(*payloads: dict):
    return [parse_frame(frame(p)) for p in payloads]


def test_store_batch_returns_only_new_rows_and_keeps_one_copy():
    first = force_order(symbol="BTCUSDT", T=1766845883281)
    second = force_order(symbol="ETHUSDT", side="BUY", T=1766845883282)
    stored = liquidation_store_batch(events=_events(first, second))
    assert [liq.symbol for liq in stored] == ["BTCUSDT", "ETHUSDT"]
    # A replay of the same event (same key, trailing zeros differ) is skipped.
    replay = force_order(symbol="BTCUSDT", T=1766845883281, z="0.0100", ap="87010.500")
    again = liquidation_store_batch(events=_events(replay, first))
    assert again == []
    assert Liquidation.objects.count() == 2


def test_stored_row_keeps_fields_and_milliseconds():
    payload = force_order(
        symbol="SOLUSDT", q="3", p="120", ap="121.5", l="1", z="2", T=1766845883281
    )
    (liq,) = liquidation_store_batch(events=_events(payload))
    liq.refresh_from_db()
    assert liq.trade_time.microsecond == 281000
    assert liq.filled_quantity == Decimal("2")
    assert liq.last_filled_quantity == Decimal("1")
    assert liq.notional_usd == Decimal("243")


def test_messages_render_each_row_once_per_batch_for_all_and_symbol_groups():
    symbol_listed("BTCUSDT", "BTC")
    stored = liquidation_store_batch(
        events=_events(
            force_order(symbol="BTCUSDT", z="12.5", ap="100000"),
            force_order(symbol="ETHUSDT", side="BUY"),
        )
    )
    messages = liquidation_messages_of(stored)
    assert set(messages) == {"liquidations.all", "liquidations.BTCUSDT", "liquidations.ETHUSDT"}
    all_rows = messages["liquidations.all"]["rows"]
    assert [row["symbol"] for row in all_rows] == ["BTCUSDT", "ETHUSDT"]
    btc = messages["liquidations.BTCUSDT"]["rows"][0]
    assert btc is all_rows[0]
    assert "12.500 BTC" in btc["html"]
    assert "$1,250,000" in btc["html"]
    assert "Long liquidated" in btc["html"]
    assert btc["usd"] == 1_250_000.0


def check_store_new_returns_each_new_row_once_as_stored() -> None:
    old = force_order(symbol="BTCUSDT", T=1766845880000)
    liquidation_store_new(events=_events(old))
    payloads = [
        force_order(symbol="ETHUSDT", side="BUY", z="1.5", ap="3000.25", T=1766845883283),
        force_order(symbol="BTCUSDT", z="0.0100", ap="87010.500", T=1766845880000),  # stored
        force_order(symbol="SOLUSDT", z="2", ap="121.5", T=1766845883281),
        force_order(symbol="SOLUSDT", z="2.0", ap="121.50", T=1766845883281, X="EXPIRED"),
        force_order(symbol="SOLUSDT", side="BUY", z="2", ap="121.5", T=1766845883281),
        # Equal only once rounded to the columns' 12 places: PostgreSQL keeps one row.
        force_order(symbol="XRPUSDT", z="1.0000000000001", ap="2", T=1766845883282),
        force_order(symbol="XRPUSDT", z="1.0000000000002", ap="2", T=1766845883282),
    ]
    before = Liquidation.objects.count()
    stored = liquidation_store_new(events=_events(*payloads))
    added = Liquidation.objects.count() - before
    assert len(stored) == added == len({liq.pk for liq in stored})
    assert [(liq.symbol, liq.side) for liq in stored][:3] == [
        ("SOLUSDT", "SELL"),
        ("SOLUSDT", "BUY"),
        ("XRPUSDT", "SELL"),
    ]
    assert stored == sorted(stored, key=lambda liq: (liq.trade_time, liq.pk))
    rows = Liquidation.objects.in_bulk([liq.pk for liq in stored])
    for liq in stored:
        row = rows[liq.pk]
        assert (row.symbol, row.side, row.trade_time) == (liq.symbol, liq.side, liq.trade_time)
        # The decimals as the database keeps them (rounded to the column's scale).
        assert (row.filled_quantity, row.average_price, row.notional_usd) == (
            liq.filled_quantity,
            liq.average_price,
            liq.notional_usd,
        )
        assert str(row.notional_usd) == str(liq.notional_usd)
    assert rows[stored[0].pk].order_status == "FILLED"
    assert liquidation_store_new(events=_events(*payloads)) == []
    assert Liquidation.objects.count() == before + added


def test_store_new_returns_each_new_row_once_as_stored():
    check_store_new_returns_each_new_row_once_as_stored()


@pytest.mark.production
def test_pg_store_new_returns_each_new_row_once_as_stored():
    check_store_new_returns_each_new_row_once_as_stored()


def check_live_rows_match_rows_read_back() -> None:
    """The worker renders rows from the events it stored; a page from the table: same HTML."""
    symbol_listed("BTCUSDT", "BTC", quantity_precision=3)
    rnd = random.Random(3)
    payloads = [
        force_order(
            symbol=rnd.choice(["BTCUSDT", "ETHUSDT", "1000PEPEUSDT"]),
            side=rnd.choice(["BUY", "SELL"]),
            z=f"{rnd.uniform(0.001, 5000):.3f}",
            ap=rnd.choice(["0.0045120", "87010.50", "3000", f"{rnd.uniform(0.5, 90000):.4f}"]),
            T=1766845883281 + i,
        )
        for i in range(6000)  # more than one statement's worth of parameters before
    ]
    stored = liquidation_store_new(events=_events(*payloads))
    assert len(stored) == 6000
    live = liquidation_messages_of(stored)
    models = Liquidation.objects.in_bulk([liq.pk for liq in stored])
    reloaded = liquidation_messages_of([models[liq.pk] for liq in stored])
    assert live == reloaded


def test_live_rows_match_rows_read_back():
    check_live_rows_match_rows_read_back()


@pytest.mark.production
def test_pg_live_rows_match_rows_read_back():
    check_live_rows_match_rows_read_back()


class CountingExecutor(ThreadPoolExecutor):
    """A real thread pool that counts the work handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.submitted = 0

    def submit(self, *args, **kwargs):
        self.submitted += 1
        return super().submit(*args, **kwargs)


def check_ingest_renders_every_new_row_once_in_order(monkeypatch, *, chunked: bool) -> None:
    monkeypatch.setattr(liquidations_store, "STORE_CHUNK_ROWS", 7)
    symbol_listed("BTCUSDT", "BTC")
    payloads = [
        force_order(
            symbol=["BTCUSDT", "ETHUSDT", "SOLUSDT"][i % 3],
            side=["BUY", "SELL"][i % 2],
            z=f"{i + 1}.5",
            T=1766845883281 + (i * 7919) % 50,  # out of order, equal times across chunks
        )
        for i in range(50)
    ]
    replayed = payloads[5:12]
    liquidation_store_new(events=_events(*replayed))
    events = _events(*payloads, *payloads[20:30])  # duplicates in later chunks too
    with CountingExecutor() as executor:
        stored, messages = store_and_render(events, render_executor=executor)
    assert executor.submitted == (8 if chunked else 0)  # 50 unique events: 8 chunks
    assert len(stored) == 43 == Liquidation.objects.count() - len(replayed)
    rows = messages["liquidations.all"]["rows"]
    assert [row["id"] for row in rows] == [liq.pk for liq in stored]
    assert len({row["id"] for row in rows}) == 43
    assert [(row["trade_time_ms"], row["id"]) for row in rows] == sorted(
        (row["trade_time_ms"], row["id"]) for row in rows
    )
    assert messages == liquidation_messages_of(stored)
    models = Liquidation.objects.in_bulk([liq.pk for liq in stored])
    assert messages == liquidation_messages_of([models[liq.pk] for liq in stored])


def test_ingest_renders_every_new_row_once_in_order(monkeypatch):
    check_ingest_renders_every_new_row_once_in_order(monkeypatch, chunked=False)


@pytest.mark.production
def test_pg_ingest_renders_chunks_while_storing_the_next(monkeypatch):
    check_ingest_renders_every_new_row_once_in_order(monkeypatch, chunked=True)

from __future__ import annotations

from decimal import Decimal

import pytest

from liquidations.binance import parse_frame
from liquidations.models import Liquidation
from liquidations.services import liquidation_messages, liquidation_store_batch
from tests.factories import force_order, frame, symbol_listed

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
    messages = liquidation_messages(liquidations=stored)
    assert set(messages) == {"liquidations.all", "liquidations.BTCUSDT", "liquidations.ETHUSDT"}
    all_rows = messages["liquidations.all"]["rows"]
    assert [row["symbol"] for row in all_rows] == ["BTCUSDT", "ETHUSDT"]
    btc = messages["liquidations.BTCUSDT"]["rows"][0]
    assert btc is all_rows[0]
    assert "12.500 BTC" in btc["html"]
    assert "$1,250,000" in btc["html"]
    assert "Long liquidated" in btc["html"]
    assert btc["usd"] == 1_250_000.0

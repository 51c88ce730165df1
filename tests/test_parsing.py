from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from liquidations.upstream.binance import parse_frame, stream_url
from liquidations.upstream.events import MalformedFrame
from tests.factories import force_order, frame


def test_every_field_is_parsed_and_extras_ignored():
    payload = force_order(
        symbol="1000PEPEUSDT",
        side="BUY",
        q="4500.0",
        p="0.2139000",
        ap="0.2108477",
        l="1032.0",
        z="4500.0",
        T=1766845883281,
        E=1766845884181,
        future_field="x",
    )
    event = parse_frame(frame(payload))
    assert (event.venue, event.instrument, event.symbol) == ("binance",) + ("1000PEPEUSDT",) * 2
    assert event.side == "BUY"
    assert event.order_type == "LIMIT"
    assert event.time_in_force == "IOC"
    assert event.original_quantity == Decimal("4500.0")
    assert event.price == Decimal("0.2139000")
    assert event.average_price == Decimal("0.2108477")
    assert event.order_status == "FILLED"
    assert event.last_filled_quantity == Decimal("1032.0")
    assert event.filled_quantity == Decimal("4500.0")
    assert event.trade_time == datetime(2025, 12, 27, 14, 31, 23, 281000, tzinfo=UTC)
    assert event.event_time_ms == 1766845884181


def test_size_is_accumulated_fill_not_last_fill():
    event = parse_frame(frame(force_order(l="1032.0", z="4500.0", ap="0.2", q="4500.0")))
    assert event.notional_usd == Decimal("900.00000000")


def test_amount_falls_back_to_quantity_times_price_without_average_price():
    event = parse_frame(frame(force_order(q="2", p="100.5", ap="0", z="0")))
    assert event.notional_usd == Decimal("201.00000000")


def test_combined_stream_frames_are_unwrapped():
    event = parse_frame(frame(force_order(symbol="ETHUSDT"), combined=True))
    assert event.symbol == "ETHUSDT"


def test_event_is_immutable():
    event = parse_frame(frame(force_order()))
    with pytest.raises(AttributeError):
        event.symbol = "X"  # type: ignore[misc]


def test_real_frames_from_the_shared_capture_parse(real_capture):
    lines = real_capture.read_text().splitlines()
    # Every line parses, the real non-ASCII contract (币安人生USDT) included.
    events = [parse_frame(line) for line in lines]
    assert sum(e.symbol == "币安人生USDT" for e in events) == 5
    first = orjson.loads(lines[0])["data"]
    assert events[0].symbol == first["o"]["s"]
    assert events[0].filled_quantity == Decimal(first["o"]["z"])
    # Real data: last fill differs from accumulated fill in a large share of events.
    differing = sum(e.last_filled_quantity != e.filled_quantity for e in events)
    assert differing > len(events) // 4


def _order_with(**changes: object) -> str:
    payload = force_order()
    payload["o"].update(changes)
    return frame(payload)


def _without(key: str) -> str:
    payload = force_order()
    del payload["o"][key]
    return frame(payload)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "not an object"),
        ('"text"', "not an object"),
        (frame({"e": "aggTrade", "E": 1766845884181, "o": {}}), "unexpected event type"),
        (frame({"e": "forceOrder", "E": 1766845884181}), "missing order object"),
        (_without("z"), "'z' missing"),
        (_without("T"), "'T' missing"),
        (_without("s"), "'s' missing"),
        (_order_with(q="abc"), "not numeric"),
        (_order_with(p="-1"), "negative"),
        (_order_with(ap="NaN"), "not finite"),
        (_order_with(z="Infinity"), "not finite"),
        (_order_with(z="1e30"), "out of range"),
        (_order_with(z=True), "not a number"),
        (_order_with(S="HOLD"), "invalid side"),
        (_order_with(s="BTCUSDT\n"), "invalid symbol"),
        (_order_with(s="BTC USDT"), "invalid symbol"),
        (_order_with(s="BTC\u00a0USDT"), "invalid symbol"),
        (_order_with(s="BTC\u200bUSDT"), "invalid symbol"),
        (_order_with(s="\x00BTC"), "invalid symbol"),
        (_order_with(s="A" * 31), "invalid symbol"),
        # PostgreSQL refuses NUL in text: one such event cost its whole batch.
        (_order_with(o="LIM\u0000IT"), "'o' contains a control character"),
        (_order_with(f="IOC\x7f"), "'f' contains a control character"),
        (_order_with(X="FILLED\u0085"), "'X' contains a control character"),
        (_order_with(S="BUY\x00"), "'S' contains a control character"),
        (_order_with(s=""), "invalid symbol"),
        (_order_with(s=7), "'s' missing or not a string"),
        (_order_with(T="1766845883281"), "not an integer"),
        (_order_with(T=12), "out of range"),
        (frame({**force_order(), "E": None}), "'E' missing"),
    ],
)
def test_malformed_frames_are_refused_with_a_reason(raw, reason):
    with pytest.raises(MalformedFrame, match=reason):
        parse_frame(raw)


def test_stream_urls_use_the_routed_market_paths():
    base = "wss://fstream.binance.com/market"
    assert stream_url(base_url=base) == "wss://fstream.binance.com/market/ws/!forceOrder@arr"
    assert (
        stream_url(base_url=base, symbols=["BTCUSDT", "ETHUSDT"])
        == "wss://fstream.binance.com/market/stream?streams=btcusdt@forceOrder/ethusdt@forceOrder"
    )

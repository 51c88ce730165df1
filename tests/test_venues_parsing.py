"""Bybit and OKX frames into the common event: side, base quantity, price and USD.

Expected values are worked out by hand from each frame (and, for OKX, the contract value
of its instrument), not by the code under test.
"""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from liquidations.upstream.bybit import BybitVenue
from liquidations.upstream.bybit_instruments import BybitInstrument, parse_bybit_instruments
from liquidations.upstream.events import MalformedFrame, PartlyMalformed, UnknownInstrument
from liquidations.upstream.okx import OkxVenue
from liquidations.upstream.okx_instruments import parse_okx_instruments
from liquidations.upstream.rest import InstrumentsError
from tests.conftest import SHARED_DATA, skip_or_fail

VENUES_DATA = SHARED_DATA / "venues"
BYBIT_DOC = (
    '{"topic":"allLiquidation.ROSEUSDT","type":"snapshot","ts":1739502303204,'
    '"data":[{"T":1739502302929,"s":"ROSEUSDT","S":"Sell","v":"20000","p":"0.04499"}]}'
)
OKX_DOC = (
    '{"arg":{"channel":"liquidation-orders","instType":"SWAP"},"data":[{"details":[{"bkLoss":"0",'
    '"bkPx":"0.007831","ccy":"","posSide":"short","side":"buy","sz":"13","ts":"1692266434010"}],'
    '"instFamily":"IOST-USDT","instId":"IOST-USDT-SWAP","instType":"SWAP","uly":"IOST-USDT"}]}'
)


def bybit_listing(*instruments: tuple[str, str, str]) -> list[BybitInstrument]:
    page = {
        "retCode": 0,
        "retMsg": "OK",
        "result": {
            "category": "linear",
            "list": [
                {"symbol": name, "status": "Trading", "baseCoin": base, "quoteCoin": quote}
                for name, base, quote in instruments
            ],
            "nextPageCursor": "",
        },
    }
    return parse_bybit_instruments(page)[0]


def bybit() -> BybitVenue:
    venue = BybitVenue(ws_url="ws://127.0.0.1:9/")
    venue.set_instruments(
        bybit_listing(
            ("ROSEUSDT", "ROSE", "USDT"),
            ("BTCUSDT", "BTC", "USDT"),
            ("BTCPERP", "BTC", "USDC"),
            ("ICPUSDT", "ICP", "USDT"),
            ("MARSCOINUSDT", "MARSCOIN", "USDT"),
            ("STRKUSDT", "STRK", "USDT"),
            ("ADAUSDT", "ADA", "USDT"),
        )
    )
    return venue


OKX_LISTING = {
    "code": "0",
    "msg": "",
    "data": [
        # As OKX listed them (okx-instruments-swap-2022-05-13.json); CNPY is newer.
        {"instId": "IOST-USDT-SWAP", "ctType": "linear", "ctVal": "1000", "ctValCcy": "IOST",
         "uly": "IOST-USDT", "state": "live"},
        {"instId": "BTC-USDT-SWAP", "ctType": "linear", "ctVal": "0.01", "ctValCcy": "BTC",
         "uly": "BTC-USDT", "state": "live"},
        {"instId": "BTC-USD-SWAP", "ctType": "inverse", "ctVal": "100", "ctValCcy": "USD",
         "uly": "BTC-USD", "state": "live"},
        {"instId": "CELO-USDT-SWAP", "ctType": "linear", "ctVal": "1", "ctValCcy": "CELO",
         "uly": "CELO-USDT", "state": "live"},
        {"instId": "MINA-USDT-SWAP", "ctType": "linear", "ctVal": "1", "ctValCcy": "MINA",
         "uly": "MINA-USDT", "state": "live"},
        {"instId": "CNPY-USDT-SWAP", "ctType": "linear", "ctVal": "1", "ctValCcy": "CNPY",
         "uly": "CNPY-USDT", "state": "live"},
    ],
}  # fmt: skip


def okx() -> OkxVenue:
    venue = OkxVenue(ws_url="ws://127.0.0.1:9/")
    venue.set_instruments(parse_okx_instruments(OKX_LISTING))
    return venue


def okx_frame(inst_id: str, uly: str, **detail: str) -> str:
    item = {"bkLoss": "0", "bkPx": "1", "ccy": "", "posSide": "long", "side": "sell",
            "sz": "1", "ts": "1791565600771", **detail}  # fmt: skip
    entry = {
        "details": [item],
        "instFamily": uly,
        "instId": inst_id,
        "instType": "SWAP",
        "uly": uly,
    }
    return orjson.dumps({"arg": {"channel": "liquidation-orders", "instType": "SWAP"},
                         "data": [entry]}).decode()  # fmt: skip


def summary(event) -> tuple:
    return (event.venue, event.instrument, event.symbol, event.side, event.filled_quantity,
            event.average_price, event.notional_usd)  # fmt: skip


def test_bybit_doc_example_a_sell_position_side_is_a_short_liquidated():
    (event,) = bybit().parse(BYBIT_DOC)
    # "S":"Sell" is the position: a short was liquidated by a BUY order; 20000 × 0.04499.
    assert summary(event) == (
        "bybit", "ROSEUSDT", "ROSEUSDT", "BUY", Decimal(20000), Decimal("0.04499"),
        Decimal("899.80000000"),
    )  # fmt: skip
    assert event.trade_time_ms == 1739502302929
    assert event.event_time_ms == 1739502303204
    assert event.price == Decimal("0.04499") and event.original_quantity == Decimal(20000)
    # What Bybit does not publish is left empty, never invented.
    assert (event.order_type, event.time_in_force, event.order_status) == ("", "", "")
    assert event.last_filled_quantity is None


def test_bybit_usdc_perpetual_is_recorded_under_its_base_and_quote():
    frame = (
        '{"topic":"allLiquidation.BTCPERP","type":"snapshot","ts":1791565601482,"data":'
        '[{"T":1791565600992,"s":"BTCPERP","S":"Buy","v":"0.5","p":"90000.5"}]}'
    )
    (event,) = bybit().parse(frame)
    assert summary(event) == (
        "bybit", "BTCPERP", "BTCUSDC", "SELL", Decimal("0.5"), Decimal("90000.5"),
        Decimal("45000.25000000"),
    )  # fmt: skip


def test_okx_doc_example_contracts_become_base_units():
    (event,) = okx().parse(OKX_DOC)
    # side "buy" is the order: a short was liquidated; 13 contracts × 1000 IOST each.
    assert summary(event) == (
        "okx", "IOST-USDT-SWAP", "IOSTUSDT", "BUY", Decimal(13000), Decimal("0.007831"),
        Decimal("101.80300000"),
    )  # fmt: skip
    assert event.trade_time_ms == 1692266434010
    assert event.event_time_ms is None and event.last_filled_quantity is None


def test_okx_inverse_swap_usd_is_contracts_times_value_and_base_is_usd_over_price():
    frame = okx_frame("BTC-USD-SWAP", "BTC-USD", side="sell", sz="13", bkPx="82655.7")
    (event,) = okx().parse(frame)
    # 13 contracts × $100 = $1,300; 1300 / 82655.7 = 0.015727892934 BTC (12 places).
    assert summary(event) == (
        "okx", "BTC-USD-SWAP", "BTCUSD", "SELL", Decimal("0.015727892934"),
        Decimal("82655.7"), Decimal("1300.00000000"),
    )  # fmt: skip


def test_okx_fractional_contracts():
    frame = okx_frame("BTC-USDT-SWAP", "BTC-USDT", side="sell", sz="8.55", bkPx="82655.7")
    (event,) = okx().parse(frame)
    # 8.55 × 0.01 = 0.0855 BTC; × 82655.7 = 7067.06235.
    assert (event.side, event.filled_quantity, event.notional_usd) == (
        "SELL",
        Decimal("0.0855"),
        Decimal("7067.06235000"),
    )


def _jsonl(name: str) -> list[str]:
    path = VENUES_DATA / name
    if not path.exists():
        skip_or_fail(f"captured frames not found at {path}")
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_real_bybit_frames_parse_as_worked_out_by_hand():
    events = [
        e for line in _jsonl("bybit-allLiquidation-captured.jsonl") for e in bybit().parse(line)
    ]
    assert [(e.symbol, e.side, e.filled_quantity, e.notional_usd) for e in events] == [
        ("ICPUSDT", "SELL", Decimal("19.7"), Decimal("50.92450000")),  # Buy: a long
        ("MARSCOINUSDT", "BUY", Decimal("2380"), Decimal("303.06920000")),
        ("STRKUSDT", "SELL", Decimal("2084.9"), Decimal("107.68508500")),
        # One message, two liquidations.
        ("BTCUSDT", "SELL", Decimal("0.006"), Decimal("494.38140000")),
        ("BTCUSDT", "SELL", Decimal("0.038"), Decimal("3130.98340000")),
        ("ADAUSDT", "BUY", Decimal("13248"), Decimal("2536.99200000")),
    ]


def test_real_okx_frames_parse_as_worked_out_by_hand():
    events = [
        e for line in _jsonl("okx-liquidation-orders-captured.jsonl") for e in okx().parse(line)
    ]
    assert [(e.symbol, e.side, e.filled_quantity, e.notional_usd) for e in events] == [
        ("CNPYUSDT", "BUY", Decimal("2137"), Decimal("889.41940000")),
        ("BTCUSDT", "SELL", Decimal("0.0855"), Decimal("7067.06235000")),
        ("CELOUSDT", "BUY", Decimal("19979"), Decimal("1914.58757000")),
        ("MINAUSDT", "BUY", Decimal("10975"), Decimal("1082.02525000")),
    ]


def test_real_okx_listing_gives_contract_values_and_types():
    path = VENUES_DATA / "okx-instruments-swap-2022-05-13.json"
    if not path.exists():
        skip_or_fail(f"captured listing not found at {path}")
    listed = {i.instrument: i for i in parse_okx_instruments(orjson.loads(path.read_bytes()))}
    assert len(listed) == 166
    assert (listed["BTC-USDT-SWAP"].contract_value, listed["BTC-USDT-SWAP"].inverse) == (
        Decimal("0.01"),
        False,
    )
    assert (listed["ETH-USD-SWAP"].symbol, listed["ETH-USD-SWAP"].inverse) == ("ETHUSD", True)


def test_acks_and_pongs_are_not_events_and_refusals_are_counted(caplog):
    venue = bybit()
    messages = venue.connect_messages()
    # 7 topics: one request; Bybit takes at most 10 topics a request.
    assert [len(orjson.loads(m)["args"]) for m in messages] == [7]
    req_id = orjson.loads(messages[0])["req_id"]
    assert (
        venue.parse(f'{{"success":true,"ret_msg":"","op":"subscribe","req_id":"{req_id}"}}') == []
    )
    assert venue.parse('{"success":true,"ret_msg":"pong","conn_id":"x","op":"ping"}') == []
    assert len(venue.acked) == 7 and not venue.pending
    more = venue.new_messages()
    assert more == []
    assert (
        venue.parse('{"success":false,"ret_msg":"bad topic","op":"subscribe","req_id":"99"}') == []
    )
    assert venue.refused == 1 and "bad topic" in caplog.text
    other = okx()
    assert other.parse(b"pong") == []
    assert (
        other.parse('{"event":"subscribe","arg":{"channel":"liquidation-orders"},"connId":"a"}')
        == []
    )
    assert other.subscribed


def test_bybit_subscribes_in_requests_of_at_most_ten_topics():
    venue = BybitVenue(ws_url="ws://127.0.0.1:9/")
    venue.set_instruments(bybit_listing(*[(f"C{n}USDT", f"C{n}", "USDT") for n in range(23)]))
    sizes = [len(orjson.loads(m)["args"]) for m in venue.connect_messages()]
    assert sizes == [10, 10, 3]


def test_bybit_instrument_pages_end_at_an_empty_cursor():
    page = {"retCode": 0, "result": {"list": [
        {"symbol": "BTCUSDT", "status": "Trading", "baseCoin": "BTC", "quoteCoin": "USDT"},
        {"symbol": "BAD", "status": "Trading", "baseCoin": "B\nAD", "quoteCoin": "USDT"},
    ], "nextPageCursor": "abc"}}  # fmt: skip
    instruments, cursor = parse_bybit_instruments(page)
    assert [i.symbol for i in instruments] == ["BTCUSDT"] and cursor == "abc"
    with pytest.raises(InstrumentsError, match="refused"):
        parse_bybit_instruments({"retCode": 10001, "retMsg": "params error"})


def _bybit_with(**item: object) -> str:
    data = {"T": 1791565600992, "s": "BTCUSDT", "S": "Buy", "v": "1", "p": "2", **item}
    return orjson.dumps(
        {"topic": "allLiquidation.BTCUSDT", "ts": 1791565601482, "data": [data]}
    ).decode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("not json", "not JSON"),
        ("[1]", "not an object"),
        ('{"topic":"orderbook.50.BTCUSDT","data":[]}', "unexpected topic"),
        ('{"topic":"allLiquidation.BTCUSDT","data":[]}', "'data' missing"),
        ('{"op":"auth","success":true}', "neither a topic message nor an ack"),
        (_bybit_with(S="Long"), "invalid side"),
        (_bybit_with(v="-1"), "negative"),
        (_bybit_with(p="abc"), "not numeric"),
        (_bybit_with(T="1791565600992"), "not an integer"),
        (_bybit_with(s="BTC USDT"), "invalid symbol"),
        (_bybit_with(s="NEWUSDT"), "not in Bybit's listing"),
    ],
)
def test_malformed_bybit_frames_are_refused_with_a_reason(raw, reason):
    with pytest.raises(MalformedFrame, match=reason):
        bybit().parse(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("pong pong", "not JSON"),
        ('{"arg":{"channel":"trades"},"data":[]}', "not a liquidation-orders push"),
        ('{"event":"login"}', "unexpected event"),
        (okx_frame("BTC-USDT-SWAP", "BTC-USDT", side="hold"), "invalid side"),
        (okx_frame("BTC-USDT-SWAP", "BTC-USDT", sz="NaN"), "not finite"),
        (okx_frame("BTC-USDT-SWAP", "BTC-USDT", ts="soon"), "not an integer"),
        (okx_frame("BTC-USD-SWAP", "BTC-USD", bkPx="0"), "'bkPx' is zero"),
        (okx_frame("NEW-USDT-SWAP", "NEW-USDT"), "not in OKX's listing"),
    ],
)
def test_malformed_okx_frames_are_refused_with_a_reason(raw, reason):
    with pytest.raises(MalformedFrame, match=reason):
        okx().parse(raw)


def test_an_unknown_instrument_is_told_apart_for_a_listing_refresh():
    with pytest.raises(UnknownInstrument):
        okx().parse(okx_frame("NEW-USDT-SWAP", "NEW-USDT"))
    with pytest.raises(UnknownInstrument):
        bybit().parse(_bybit_with(s="NEWUSDT"))


def test_the_valid_events_of_a_partly_malformed_message_are_kept():
    frame = orjson.dumps({"topic": "allLiquidation.BTCUSDT", "data": [
        {"T": 1791565600992, "s": "BTCUSDT", "S": "Buy", "v": "1", "p": "2"},
        {"T": 1791565600993, "s": "BTCUSDT", "S": "Buy", "v": "x", "p": "2"},
    ]})  # fmt: skip
    with pytest.raises(PartlyMalformed) as caught:
        bybit().parse(frame)
    assert caught.value.count == 1
    assert [e.trade_time_ms for e in caught.value.events] == [1791565600992]


def test_only_the_configured_symbols_are_kept_by_canonical_name():
    venue = OkxVenue(ws_url="ws://127.0.0.1:9/", symbols=["BTCUSD"])
    venue.set_instruments(parse_okx_instruments(OKX_LISTING))
    assert venue.parse(okx_frame("BTC-USDT-SWAP", "BTC-USDT")) == []
    assert len(venue.parse(okx_frame("BTC-USD-SWAP", "BTC-USD"))) == 1
    subscribed = BybitVenue(ws_url="ws://127.0.0.1:9/", symbols=["BTCUSDC"])
    subscribed.set_instruments(
        bybit_listing(("BTCUSDT", "BTC", "USDT"), ("BTCPERP", "BTC", "USDC"))
    )
    assert subscribed.wanted == ["BTCPERP"]

"""The JSON API: volume buckets, liquidation items, cursor pagination, every 400/404.

The check_* helpers hold the assertions; thin tests run them on SQLite (embedded) and,
marked `production`, on PostgreSQL, where the bucket SQL differs.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from liquidations.selectors.volume import MAX_RANGE, TIMEFRAMES
from liquidations.web.api import format_usd
from tests.factories import DAY_BOUNDARY_S, liq, roll_up, store, symbol_listed

VOLUME = "/api/v1/liquidation-volume"


def volume(client, symbol: str, timeframe: str, **params):
    return client.get(f"{VOLUME}/{symbol}/{timeframe}", params)


def check_bucket_boundaries(client, *, rolled: bool = False) -> None:
    """Events exactly on, just before and just after UTC boundaries, for every timeframe.

    rolled: the per-minute rollup holds the rows (it covers the last 25 h of its clock:
    timeframes up to 4h are then summed from it, 1d from the rows).
    """
    for index, (timeframe, seconds) in enumerate(TIMEFRAMES.items()):
        symbol = f"EDGE{index}USDT"
        boundary_ms = DAY_BOUNDARY_S * 1000
        step_ms = seconds * 1000
        store(
            liq(symbol=symbol, T=boundary_ms - 1, side="SELL", z="1", ap="10"),
            liq(symbol=symbol, T=boundary_ms, side="BUY", z="2", ap="10"),
            liq(symbol=symbol, T=boundary_ms + step_ms - 1, side="SELL", z="3", ap="10"),
            liq(symbol=symbol, T=boundary_ms + step_ms, side="BUY", z="4", ap="10"),
        )
        if rolled:
            roll_up(now_ms=boundary_ms + 20 * 3600 * 1000)
        response = volume(
            client,
            symbol,
            timeframe,
            start_time=boundary_ms - step_ms,
            end_time=boundary_ms + 2 * step_ms,
        )
        assert response.status_code == 200, response.content
        data = response.json()["data"]
        got = [(b["time"], b["buy_volume"], b["sell_volume"], b["count"]) for b in data]
        assert got == [
            (DAY_BOUNDARY_S - seconds, "0.00", "10.00", 1),
            (DAY_BOUNDARY_S, "20.00", "30.00", 2),
            (DAY_BOUNDARY_S + seconds, "40.00", "0.00", 1),
        ], timeframe
        assert [b["timestamp_ms"] for b in data] == [b["time"] * 1000 for b in data]
        # The range is [start, end): a bound on a boundary starts or ends a bucket exactly.
        response = volume(
            client, symbol, timeframe, start_time=boundary_ms, end_time=boundary_ms + step_ms
        )
        assert [(b["time"], b["count"]) for b in response.json()["data"]] == [(DAY_BOUNDARY_S, 2)]


def check_volume_sums(client, *, rolled: bool = False) -> None:
    """buy/sell/total/delta against amounts computed by hand."""
    t0 = DAY_BOUNDARY_S * 1000 + 60_000 * 7  # 00:07 UTC
    store(
        liq(symbol="SUMSUSDT", T=t0 + 1_000, side="SELL", z="2", ap="100.25"),  # 200.50
        liq(symbol="SUMSUSDT", T=t0 + 2_000, side="BUY", z="0.5", ap="3000"),  # 1500.00
        liq(symbol="SUMSUSDT", T=t0 + 3_000, side="BUY", z="1234", ap="1000"),  # 1,234,000.00
        liq(symbol="SUMSUSDT", T=t0 + 4_000, side="SELL", z="0.001", ap="87010.5"),  # 87.0105
        # Another symbol and another minute do not leak in.
        liq(symbol="OTHERUSDT", T=t0 + 5_000, side="BUY", z="9", ap="9"),
        liq(symbol="SUMSUSDT", T=t0 + 60_000, side="SELL", z="5", ap="1"),
    )
    if rolled:
        roll_up(now_ms=t0 + 3600 * 1000)
        # A row newer than the rollup's watermark still counts.
        store(liq(symbol="SUMSUSDT", T=t0 + 59_999, side="BUY", z="1", ap="0.01"))
    response = volume(client, "SUMSUSDT", "1m", start_time=t0, end_time=t0 + 60_000)
    body = response.json()
    assert body["symbol"] == "SUMSUSDT"
    assert body["timeframe"] == "1m"
    assert (body["start_time"], body["end_time"]) == (t0, t0 + 60_000)
    (bucket,) = body["data"]
    assert bucket == {
        "time": t0 // 1000,
        "timestamp_ms": t0,
        "buy_volume": "1235500.01" if rolled else "1235500.00",
        "sell_volume": "287.51",
        "total_volume": "1235787.52" if rolled else "1235787.51",
        "delta_volume": "1235212.50" if rolled else "1235212.49",
        "buy_volume_formatted": "1.24M",
        "sell_volume_formatted": "287.51",
        "total_volume_formatted": "1.24M",
        "delta_volume_formatted": "1.24M",
        "count": 5 if rolled else 4,
    }
    # Longs liquidated only: delta is negative.
    response = volume(client, "SUMSUSDT", "1m", start_time=t0 + 60_000, end_time=t0 + 120_000)
    (bucket,) = response.json()["data"]
    assert (bucket["delta_volume"], bucket["delta_volume_formatted"]) == ("-5.00", "-5.00")


def check_range_pagination_with_ties(client) -> None:
    """Cursor pages of /api/v1/liquidations/paged: time order, ties in trade_time, no gaps."""
    t0 = DAY_BOUNDARY_S * 1000
    payloads = [liq(symbol="TIESUSDT", T=t0 + 5, z=str(n)) for n in range(1, 6)]  # 5 ties
    payloads += [liq(symbol="TIESUSDT", T=t0 + offset) for offset in (1, 9, 10)]
    store(*payloads)
    seen = []
    params = {"symbol": "TIESUSDT", "start_timestamp": t0, "end_timestamp": t0 + 10, "limit": 2}
    for _ in range(10):
        body = client.get("/api/v1/liquidations/paged", params).json()
        assert len(body["data"]) <= 2
        seen += [item["order_trade_time"] for item in body["data"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    # t0 + 10 is excluded; the five ties come in id order between t0+1 and t0+9.
    assert seen == [t0 + 1, *[t0 + 5] * 5, t0 + 9]
    # Pages of 3 split the ties; ties come in id (= insertion) order, none twice.
    ids = []
    params.pop("cursor")
    params["limit"] = 3
    while True:
        body = client.get("/api/v1/liquidations/paged", params).json()
        ids += [
            (item["order_trade_time"], item["order_filled_accumulated_quantity"])
            for item in body["data"]
        ]
        if not body["next_cursor"]:
            break
        params["cursor"] = body["next_cursor"]
    assert ids == [(t0 + 1, "1")] + [(t0 + 5, str(n)) for n in range(1, 6)] + [(t0 + 9, "1")]


@pytest.mark.django_db
@pytest.mark.parametrize("rolled", [False, True], ids=["rows", "rollup"])
def test_buckets_align_to_utc_boundaries_for_every_timeframe(client, rolled):
    check_bucket_boundaries(client, rolled=rolled)


@pytest.mark.django_db
@pytest.mark.parametrize("rolled", [False, True], ids=["rows", "rollup"])
def test_volume_sums_match_hand_computed_values(client, rolled):
    check_volume_sums(client, rolled=rolled)


@pytest.mark.django_db
def test_liquidations_range_pages_through_ties_in_time_order(client):
    check_range_pagination_with_ties(client)


@pytest.mark.production
@pytest.mark.django_db
@pytest.mark.parametrize("rolled", [False, True], ids=["rows", "rollup"])
def test_pg_buckets_align_to_utc_boundaries(client, rolled):
    check_bucket_boundaries(client, rolled=rolled)


@pytest.mark.production
@pytest.mark.django_db
@pytest.mark.parametrize("rolled", [False, True], ids=["rows", "rollup"])
def test_pg_volume_sums_match_hand_computed_values(client, rolled):
    check_volume_sums(client, rolled=rolled)


@pytest.mark.production
@pytest.mark.django_db
def test_pg_liquidations_range_pages_through_ties(client):
    check_range_pagination_with_ties(client)


@pytest.mark.django_db
def test_volume_defaults_to_the_last_24_hours(client):
    store(liq(symbol="BTCUSDT", T=DAY_BOUNDARY_S * 1000))
    body = volume(client, "btcusdt", "1m").json()
    assert body["symbol"] == "BTCUSDT"
    assert body["end_time"] - body["start_time"] == 24 * 3600 * 1000
    assert body["data"] == []  # the stored event is from 2025


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("timeframe", "params", "message"),
    [
        ("2m", {}, "timeframe must be one of 1m, 5m, 15m, 30m, 1h, 4h, 1d"),
        ("1M", {}, "timeframe must be one of"),
        ("1m", {"start_time": "abc"}, "start_time must be an integer"),
        ("1m", {"end_time": "1.5"}, "end_time must be an integer"),
        ("1m", {"start_time": "2000", "end_time": "1766880000000"}, "start_time must be epoch"),
        (
            "1m",
            {"start_time": "1766880060000", "end_time": "1766880000000"},
            "start_time must be before end_time",
        ),
        (
            "1m",
            {"start_time": "1766880000000", "end_time": "1766880000000"},
            "start_time must be before end_time",
        ),
    ],
)
def test_volume_bad_parameters_answer_400_with_detail(client, timeframe, params, message):
    store(liq(symbol="BTCUSDT", T=DAY_BOUNDARY_S * 1000))
    response = volume(client, "BTCUSDT", timeframe, **params)
    assert response.status_code == 400
    assert message in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("timeframe", list(TIMEFRAMES))
def test_volume_range_limit_per_timeframe(client, timeframe):
    store(liq(symbol="BTCUSDT", T=DAY_BOUNDARY_S * 1000))
    end = DAY_BOUNDARY_S * 1000
    longest = int(MAX_RANGE[timeframe] / timedelta(milliseconds=1))
    ok = volume(client, "BTCUSDT", timeframe, start_time=end - longest, end_time=end)
    assert ok.status_code == 200
    too_long = volume(client, "BTCUSDT", timeframe, start_time=end - longest - 1, end_time=end)
    assert too_long.status_code == 400
    assert f"range too long for {timeframe}" in too_long.json()["detail"]


@pytest.mark.django_db
def test_unknown_symbol_is_404_everywhere(client):
    store(liq(symbol="BTCUSDT", T=DAY_BOUNDARY_S * 1000))
    for url in (
        f"{VOLUME}/NOPEUSDT/1m",
        f"{VOLUME}/<script>/1m",
        "/api/v1/liquidation-orders?symbol=NOPEUSDT",
        "/api/v1/liquidations?symbol=NOPEUSDT",
        "/api/v1/liquidations/paged?symbol=NOPEUSDT",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "unknown symbol" in response.json()["detail"]


@pytest.mark.django_db
def test_listed_symbol_without_liquidations_is_known(client):
    symbol_listed(
        "QUIETUSDT",
        "QUIET",
        quantity_precision=0,
        price_precision=4,
        tick_size="0.0001",
        step_size="1",
    )
    assert volume(client, "QUIETUSDT", "1h").json()["data"] == []
    assert client.get("/api/v1/liquidation-orders?symbol=quietusdt").json() == []


@pytest.mark.django_db
def test_order_items_match_stored_rows_field_by_field(client):
    payload = liq(
        symbol="ETHUSDT",
        side="BUY",
        T=1_766_880_123_456,
        E=1_766_880_124_000,
        z="1.250",
        ap="3012.4500",
    )
    payload["o"].update({"q": "2.000", "p": "3010.10", "l": "0.750", "o": "LIMIT", "f": "GTC"})
    store(payload)
    (item,) = client.get("/api/v1/liquidation-orders?symbol=ETHUSDT").json()
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
        "order_trade_time": 1_766_880_123_456,
        "event_time": 1_766_880_124_000,
        "cumulated_usd_size": str(Decimal("1.25") * Decimal("3012.45")),
    }


@pytest.mark.django_db
def test_orders_are_newest_first_with_limit(client):
    t0 = DAY_BOUNDARY_S * 1000
    store(*[liq(symbol="BTCUSDT" if n % 2 else "ETHUSDT", T=t0 + n) for n in range(10)])
    items = client.get("/api/v1/liquidation-orders?limit=3").json()
    assert [i["order_trade_time"] for i in items] == [t0 + 9, t0 + 8, t0 + 7]
    items = client.get("/api/v1/liquidation-orders?symbol=BTCUSDT").json()
    assert [i["order_trade_time"] for i in items] == [t0 + 9, t0 + 7, t0 + 5, t0 + 3, t0 + 1]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/api/v1/liquidation-orders?limit=0", "limit must be between 1 and 1000"),
        ("/api/v1/liquidation-orders?limit=1001", "limit must be between 1 and 1000"),
        ("/api/v1/liquidation-orders?limit=ten", "limit must be an integer"),
        ("/api/v1/liquidations/paged?limit=-1", "limit must be between 1 and 1000"),
        ("/api/v1/liquidations?start_timestamp=x", "start_timestamp must be an integer"),
        (
            "/api/v1/liquidations?start_timestamp=1766880000001&end_timestamp=1766880000000",
            "start_timestamp must be before end_timestamp",
        ),
        ("/api/v1/liquidations/paged?cursor=!!!", "bad cursor"),
        ("/api/v1/liquidations/paged?cursor=MTIz", "bad cursor"),  # base64 of "123"
        ("/api/v1/liquidations?cursor=", "bad cursor"),
    ],
)
def test_record_api_bad_parameters_answer_400(client, url, message):
    response = client.get(url)
    assert response.status_code == 400
    assert message in response.json()["detail"]


@pytest.mark.django_db
def test_api_refuses_post(client):
    assert client.post("/api/v1/liquidation-orders").status_code == 405


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("0", "0.00"),
        ("999.994", "999.99"),
        ("1000", "1.00K"),
        ("1234567.89", "1.23M"),
        ("-2500000000", "-2.50B"),
        ("-12.5", "-12.50"),
    ],
)
def test_usd_formatting_with_units(value, text):
    assert format_usd(Decimal(value)) == text

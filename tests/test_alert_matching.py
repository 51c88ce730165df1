"""Alert rule matching, by hand-computed cases (pure functions, no database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from liquidations.alerts.matching import RuleProgress, RuleSpec, row_venue, rule_hits

T0 = 1_766_880_000_000  # ms


@dataclass
class Row:
    pk: int
    usd: int
    at_s: float = 0.0  # seconds after T0
    symbol: str = "BTCUSDT"
    side: str = "SELL"
    venue: str = "binance"

    @property
    def notional_usd(self) -> Decimal:
        return Decimal(self.usd)

    @property
    def trade_time(self) -> datetime:
        return datetime.fromtimestamp((T0 + self.at_s * 1000) / 1000, tz=UTC)

    @property
    def filled_quantity(self) -> Decimal:
        return Decimal("0.500")

    @property
    def average_price(self) -> Decimal:
        return Decimal(self.usd) * 2


def keys(hits) -> list[str]:
    return [hit.key for hit in hits]


def test_plain_rule_filters_by_amount_symbol_side_and_start():
    spec = RuleSpec(
        id=1,
        symbols=frozenset({"BTCUSDT", "ETHUSDT"}),
        side="SELL",
        min_usd=Decimal(1_000_000),
        start_after_id=2,
    )
    rows = [
        Row(1, 5_000_000),  # before the rule existed
        Row(2, 5_000_000),  # the newest row when it was created: still history
        Row(3, 999_999),  # below the minimum
        Row(4, 1_000_000),  # exactly the minimum: in
        Row(5, 2_000_000, side="BUY"),  # a short: out
        Row(6, 3_000_000, symbol="SOLUSDT"),  # another symbol: out
        Row(7, 1_500_000, symbol="ETHUSDT"),
    ]
    hits = rule_hits(spec, RuleProgress(), rows)
    assert keys(hits) == ["liq:4", "liq:7"]
    item = hits[0].items[0]
    assert item == {
        "id": 4,
        "venue": "binance",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "quantity": "0.5",
        "price": "2000000",
        "usd": "1000000",
        "time_ms": T0,
    }


def test_cooldown_skips_matches_until_it_has_passed_by_trade_time():
    spec = RuleSpec(id=1, min_usd=Decimal(100), cooldown_seconds=10)
    progress = RuleProgress()
    rows = [Row(1, 200, 0), Row(2, 200, 5), Row(3, 200, 9.999), Row(4, 200, 10), Row(5, 200, 15)]
    assert keys(rule_hits(spec, progress, rows)) == ["liq:1", "liq:4"]
    assert progress.fired_ms == T0 + 10_000
    # The next round remembers the cooldown: 19.9 s is within 10 s of the trigger at 10 s.
    assert keys(rule_hits(spec, progress, [Row(6, 200, 19.9), Row(7, 200, 20)])) == ["liq:7"]


def test_cascade_fires_when_the_window_sum_reaches_the_amount_then_starts_over():
    # >= $5M of longs within 60 s; rows of $1M unless said otherwise.
    spec = RuleSpec(id=1, side="SELL", cascade_seconds=60, cascade_usd=Decimal(5_000_000))
    progress = RuleProgress()
    rows = [
        Row(1, 2_000_000, 0),
        Row(2, 1_000_000, 30),
        Row(3, 1_000_000, 50, side="BUY"),  # a short: not counted
        Row(4, 1_000_000, 61),  # row 1 (t=0) left the window: 1+1 = $2M
        Row(5, 2_000_000, 70),  # 1+1+2 = $4M
        Row(6, 1_000_000, 80),  # 1+1+2+1 = $5M: fires with rows 2, 4, 5, 6
        Row(7, 4_000_000, 85),  # a new window: $4M
        Row(8, 1_000_000, 146),  # row 7 (t=85) left (146-60=86): $1M
        Row(9, 4_000_000, 147),  # $5M: fires with rows 8, 9
    ]
    hits = rule_hits(spec, progress, rows)
    assert keys(hits) == ["cascade:6", "cascade:9"]
    assert [item["id"] for item in hits[0].items] == [2, 4, 5, 6]
    assert hits[0].summary == {"seconds": 60, "count": 4, "usd": "5000000"}
    assert hits[1].summary == {"seconds": 60, "count": 2, "usd": "5000000"}
    assert progress.window_after_id == 9


def test_cascade_window_spans_rounds_and_skips_rows_of_a_fired_window():
    spec = RuleSpec(id=1, cascade_seconds=60, cascade_usd=Decimal(3_000_000))
    # Round 1 stored rows 1-2 ($2M): nothing yet.
    progress = RuleProgress()
    first = [Row(1, 1_000_000, 0), Row(2, 1_000_000, 10)]
    assert rule_hits(spec, progress, first) == []
    # Round 2: the window rows from the database come back (ids above the last fire).
    hits = rule_hits(spec, progress, [Row(3, 1_000_000, 20)], window=first)
    assert keys(hits) == ["cascade:3"]
    # Round 3: rows 1-3 were in the fired window; they are ignored even if passed again.
    assert rule_hits(spec, progress, [Row(4, 2_500_000, 25)], window=first) == []


def test_cascade_respects_its_cooldown():
    spec = RuleSpec(id=1, cascade_seconds=10, cascade_usd=Decimal(2), cooldown_seconds=30)
    rows = [Row(1, 2, 0), Row(2, 2, 5), Row(3, 1, 29), Row(4, 1, 31), Row(5, 1, 32)]
    # Fires at 0; 5 and 29 are within the 30 s cooldown; 31 + 32 sum to 2.
    assert keys(rule_hits(spec, RuleProgress(), rows)) == ["cascade:1", "cascade:5"]


def test_venues_match_the_rows_venue():
    assert row_venue(Row(1, 1)) == "binance"
    assert row_venue(Row(1, 1, venue="okx")) == "okx"
    okx_only = RuleSpec(id=1, venues=frozenset({"okx"}))
    binance_only = RuleSpec(id=2, venues=frozenset({"binance"}))
    rows = [Row(1, 10), Row(2, 10, venue="okx")]
    assert keys(rule_hits(okx_only, RuleProgress(), rows)) == ["liq:2"]
    assert keys(rule_hits(binance_only, RuleProgress(), rows)) == ["liq:1"]
    assert keys(rule_hits(RuleSpec(id=3), RuleProgress(), rows)) == ["liq:1", "liq:2"]

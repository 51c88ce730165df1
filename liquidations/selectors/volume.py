"""Reads: liquidation volume per time bucket (the chart and the volume API).

Everything aggregates in the database; Python only shapes the few result rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import NotSupportedError
from django.db.models import BigIntegerField, Count, ExpressionWrapper, F, Func, Q, Sum

from ..models import Liquidation, LiquidationHour, LiquidationMinute, RollupState, Side
from ..upstream.events import datetime_to_ms, ms_to_datetime

# Timeframe → bucket length in seconds, and the longest range one request may ask for.
TIMEFRAMES: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 14_400,
    "1d": 86_400,
}
MAX_RANGE: dict[str, timedelta] = {
    "1m": timedelta(days=1),
    "5m": timedelta(days=3),
    "15m": timedelta(days=7),
    "30m": timedelta(days=14),
    "1h": timedelta(days=30),
    "4h": timedelta(days=90),
    "1d": timedelta(days=365),
}
CENT = Decimal("0.01")


def epoch_bucket_sql(vendor: str, column_sql: str, seconds: int) -> str:
    """Return SQL for the epoch seconds of the UTC bucket start holding a datetime column.

    For a cursor with parameters: SQLite's strftime('%s') is written '%%s'.
    """
    n = int(seconds)
    if vendor == "sqlite":
        # Django keeps SQLite datetimes as UTC text; '%s' is seconds since the epoch.
        return f"((CAST(strftime('%%s', {column_sql}) AS INTEGER) / {n}) * {n})"
    if vendor == "postgresql":
        return f"(CAST(FLOOR(EXTRACT(EPOCH FROM {column_sql}) / {n}) AS BIGINT) * {n})"
    raise NotSupportedError(f"epoch buckets are not implemented for {vendor}")


class EpochBucket(Func):
    """Epoch seconds of the start of the UTC bucket (`seconds` long) holding a datetime.

    Bucketing by epoch arithmetic rather than a stored `trade_time_ms` column keeps one
    source of truth for the time and needs no change to the ingest path; each backend
    gets its own expression (Django stores SQLite datetimes as UTC text, PostgreSQL as
    timestamptz). Both give whole seconds, so every bucket starts on an exact multiple of
    its length since 1970-01-01 UTC: 1d buckets start at 00:00 UTC, 4h at 00/04/08...
    """

    output_field = BigIntegerField()

    def __init__(self, expression: Any, *, seconds: int) -> None:
        if not isinstance(seconds, int) or seconds <= 0:
            raise ValueError(f"bucket length must be a positive int, not {seconds!r}")
        super().__init__(expression)
        self.seconds = seconds

    def as_sql(  # type: ignore[override]  # the keyword arguments Func adds are unused
        self, compiler: Any, connection: Any, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        (expression,) = self.get_source_expressions()
        sql, params = compiler.compile(expression)
        return epoch_bucket_sql(connection.vendor, sql, self.seconds), params


@dataclass(frozen=True, slots=True)
class VolumeBucket:
    time: int  # bucket start, epoch seconds (UTC)
    buy_volume: Decimal  # shorts liquidated (BUY orders)
    sell_volume: Decimal  # longs liquidated (SELL orders)
    count: int

    @property
    def total_volume(self) -> Decimal:
        return self.buy_volume + self.sell_volume

    @property
    def delta_volume(self) -> Decimal:
        return self.buy_volume - self.sell_volume


def liquidation_volume(
    *, symbol: str, seconds: int, start: datetime, end: datetime
) -> list[VolumeBucket]:
    """Return non-empty buckets of [start, end) for the symbol, oldest first.

    Grouped in the database: the whole rollup buckets inside the range (hours for 1h
    and longer, minutes below) are summed from the rollup, which holds a few thousand
    rows whatever the liquidation count; the rest (partial edge buckets, rows newer
    than the rollup's watermark, or a range older than a rollup keeps) comes from one
    grouped query over the liquidations.
    """
    buckets: dict[int, list] = {}
    raw = Liquidation.objects.filter(symbol=symbol, trade_time__gte=start, trade_time__lt=end)
    rollup = _volume_rollup(seconds=seconds, start=start)
    if rollup is not None:
        model, step, last_id = rollup
        first_whole = -(-datetime_to_ms(start) // (step * 1000)) * step
        end_whole = datetime_to_ms(end) // (step * 1000) * step
        if first_whole < end_whole:
            rolled = (
                model.objects.filter(scope=symbol, start__gte=first_whole, start__lt=end_whole)
                .values(
                    bucket=ExpressionWrapper(
                        F("start") / seconds * seconds, output_field=BigIntegerField()
                    )
                )
                .annotate(**_side_sums("usd"), count=Sum("count"))
                .order_by()
            )
            _add_buckets(buckets, rolled)
            raw = raw.filter(
                Q(trade_time__lt=ms_to_datetime(first_whole * 1000))
                | Q(trade_time__gte=ms_to_datetime(end_whole * 1000))
                | Q(id__gt=last_id)
            )
    grouped = (
        raw.values(bucket=EpochBucket("trade_time", seconds=seconds))
        # trade_time, not id: the covering index holds it, so no heap visit.
        .annotate(**_side_sums("notional_usd"), count=Count("trade_time"))
        .order_by()
    )
    _add_buckets(buckets, grouped)
    return [
        VolumeBucket(time=time, buy_volume=usd_cents(buy), sell_volume=usd_cents(sell), count=count)
        for time, (buy, sell, count) in sorted(buckets.items())
    ]


def _volume_rollup(*, seconds: int, start: datetime):
    """Return (rollup model, its bucket seconds, watermark) that can serve, or None."""
    state = RollupState.objects.filter(id=1).values("last_id", "minutes_from", "hours_from").first()
    if state is None:
        return None
    if seconds % 3600 == 0 and state["hours_from"] and start >= state["hours_from"]:
        return LiquidationHour, 3600, state["last_id"]
    if seconds % 60 == 0 and state["minutes_from"] and start >= state["minutes_from"]:
        return LiquidationMinute, 60, state["last_id"]
    return None


def _side_sums(usd: str) -> dict[str, Sum]:
    """Shorts liquidated (BUY orders) and longs liquidated (SELL orders), summed apart."""
    return {
        "buy": Sum(usd, filter=Q(side=Side.BUY)),
        "sell": Sum(usd, filter=Q(side=Side.SELL)),
    }


def _add_buckets(buckets: dict[int, list], rows) -> None:
    for row in rows:
        total = buckets.setdefault(int(row["bucket"]), [Decimal(0), Decimal(0), 0])
        total[0] += row["buy"] or 0
        total[1] += row["sell"] or 0
        total[2] += int(row["count"])


def usd_cents(value: Decimal | None) -> Decimal:
    # Cents: SQLite sums decimals as floats; cents keep both backends equal and honest.
    return (value or Decimal(0)).quantize(CENT)

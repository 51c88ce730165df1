"""Writes: the per-minute and per-hour rollups behind stats and volume.

A day of liquidations can be hundreds of thousands of rows, a year tens of millions;
summing them per page view costs seconds. The rollups keep totals per venue, for each
symbol and for the whole market, per minute (15 days: stats windows, volume up to 30m
buckets) and per hour (400 days: volume in 1h, 4h and 1d buckets). They are advanced
incrementally, by id, once a second by the stats publisher; readers add the few raw
rows a rollup does not cover yet (see analytics.liquidation_stats and analytics.liquidation_volume).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from ..models import Liquidation, LiquidationHour, LiquidationMinute, RollupState
from ..selectors.volume import epoch_bucket_sql
from ..upstream.events import datetime_to_ms

ROLLUP_MINUTES_FOR = timedelta(days=15)  # > 14 days, the longest 30m range
ROLLUP_HOURS_FOR = timedelta(days=400)  # > 365 days, the longest 1d range
# Rows are rolled up once their insert is surely committed: ids are handed out at insert
# time, so a slow concurrent transaction (a backfill) can commit a lower id after a
# higher one. Waiting this long after `received_at` keeps the id watermark contiguous.
SETTLE = timedelta(seconds=5)
MAX_ROWS_PER_ADVANCE = 500_000
TABLES = ((LiquidationMinute, 60, ROLLUP_MINUTES_FOR), (LiquidationHour, 3600, ROLLUP_HOURS_FOR))


def liquidation_rollup_advance(
    *,
    now: datetime | None = None,
    settled_before: datetime | None = None,
    max_rows: int = MAX_ROWS_PER_ADVANCE,
) -> int:
    """Add settled rows past the watermark to the rollups; return how far it moved (ids).

    now: the clock retention is measured from; settled_before: rows received before
    this are surely committed (default: now - SETTLE).
    """
    now = now or timezone.now()
    settled_before = settled_before or now - SETTLE
    # Newest first by primary key: only the last few seconds are skipped over.
    settled_top = (
        Liquidation.objects.filter(received_at__lt=settled_before)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    watermark = RollupState.objects.filter(id=1).values_list("last_id", flat=True).first()
    if settled_top is None or (watermark is not None and settled_top <= watermark):
        return 0  # nothing to do: no write transaction (SQLite has one writer at a time)
    with transaction.atomic():
        state, _ = RollupState.objects.select_for_update().get_or_create(id=1)
        if settled_top <= state.last_id:
            return 0
        top = min(settled_top, state.last_id + max_rows)
        covered = {}
        for model, seconds, keep in TABLES:
            # Rows older than the retention are skipped and old buckets pruned: the
            # table answers from its first whole bucket after the horizon on.
            first = -(-datetime_to_ms(now - keep) // (seconds * 1000)) * seconds
            _upsert(model, seconds, after_id=state.last_id, up_to_id=top, since=first)
            model.objects.filter(start__lt=first).delete()
            covered[model] = datetime.fromtimestamp(first, tz=UTC)
        moved = top - state.last_id
        state.last_id = top
        state.minutes_from = _later(state.minutes_from, covered[LiquidationMinute])
        state.hours_from = _later(state.hours_from, covered[LiquidationHour])
        state.save(update_fields=["last_id", "minutes_from", "hours_from", "updated_at"])
    return moved


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else max(a, b)


def _upsert(model, seconds: int, *, after_id: int, up_to_id: int, since: int) -> None:
    """One INSERT .. SELECT .. GROUP BY .. ON CONFLICT DO UPDATE (adds to existing totals)."""
    quote = connection.ops.quote_name
    source = quote(Liquidation._meta.db_table)
    target = quote(model._meta.db_table)
    bucket = epoch_bucket_sql(connection.vendor, quote("trade_time"), seconds)
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    since_at = connection.ops.adapt_datetimefield_value(datetime.fromtimestamp(since, tz=UTC))
    where = f"{quote('id')} > %s AND {quote('id')} <= %s AND {quote('trade_time')} >= %s"
    params = [after_id, up_to_id, since_at]
    columns = (
        f"{quote('venue')} AS venue, {bucket} AS start, {quote('side')} AS side, "
        f"{quote('notional_usd')} AS usd FROM {source} WHERE {where}"
    )
    rows = f"SELECT {quote('symbol')} AS scope, {columns} UNION ALL SELECT '' AS scope, {columns}"
    scope, venue, start, side, usd, count, max_usd = (
        quote(name) for name in ("scope", "venue", "start", "side", "usd", "count", "max_usd")
    )
    # "WHERE 1 = 1": SQLite would otherwise read ON CONFLICT as a join constraint.
    sql = (
        f"INSERT INTO {target} ({scope}, {venue}, {start}, {side}, {usd}, {count}, {max_usd}) "
        f"SELECT scope, venue, start, side, SUM(usd), COUNT(*), MAX(usd) "
        f"FROM ({rows}) AS new_rows WHERE 1 = 1 GROUP BY scope, venue, start, side "
        f"ON CONFLICT ({scope}, {venue}, {start}, {side}) DO UPDATE SET "
        f"{usd} = {target}.{usd} + excluded.{usd}, "
        f"{count} = {target}.{count} + excluded.{count}, "
        f"{max_usd} = {greatest}({target}.{max_usd}, excluded.{max_usd})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *params])


def liquidation_rollup_catch_up(
    *, now: datetime | None = None, settled_before: datetime | None = None
) -> int:
    """Advance until no settled row is left past the watermark; return ids moved."""
    moved = 0
    while step := liquidation_rollup_advance(now=now, settled_before=settled_before):
        moved += step
    return moved

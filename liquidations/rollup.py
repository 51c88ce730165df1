"""Writes: the per-minute rollup behind the stats strip.

A day of liquidations can be hundreds of thousands of rows; summing them for every page
view costs hundreds of milliseconds. The rollup keeps per-minute totals per symbol and
for the whole market, advanced incrementally (by id) once a second by the stats
publisher, so the stats read at most 1,440 minutes per side plus the few raw rows the
rollup does not cover yet (see analytics.liquidation_stats).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import Count, Max, Sum
from django.utils import timezone

from .analytics import EpochBucket, datetime_to_ms
from .models import Liquidation, LiquidationMinute, RollupState

# Stats need the last 24 hours; an hour more absorbs clock skew between processes.
ROLLUP_HORIZON = timedelta(hours=25)
# Rows are rolled up once their insert is surely committed: ids are handed out at insert
# time, so a slow concurrent transaction (a backfill) can commit a lower id after a
# higher one. Waiting this long after `received_at` keeps the id watermark contiguous.
SETTLE = timedelta(seconds=5)
MAX_ROWS_PER_ADVANCE = 200_000
ALL_SCOPE = ""


def liquidation_rollup_advance(
    *,
    now: datetime | None = None,
    settled_before: datetime | None = None,
    max_rows: int = MAX_ROWS_PER_ADVANCE,
) -> int:
    """Add settled rows past the watermark to the per-minute totals; return rows added.

    now: the clock the 25 h horizon is measured from; settled_before: rows received
    before this are surely committed (default: now - SETTLE).
    """
    now = now or timezone.now()
    settled_before = settled_before or now - SETTLE
    with transaction.atomic():
        state, _ = RollupState.objects.select_for_update().get_or_create(id=1)
        # Newest first by primary key: only the last few seconds are skipped over.
        settled_top = (
            Liquidation.objects.filter(received_at__lt=settled_before)
            .order_by("-id")
            .values_list("id", flat=True)
            .first()
        )
        if settled_top is None or settled_top <= state.last_id:
            return 0
        top = min(settled_top, state.last_id + max_rows)
        horizon = now - ROLLUP_HORIZON
        groups = (
            Liquidation.objects.filter(id__gt=state.last_id, id__lte=top, trade_time__gte=horizon)
            .values("symbol", "side", minute=EpochBucket("trade_time", seconds=60))
            .annotate(usd=Sum("notional_usd"), count=Count("id"), max_usd=Max("notional_usd"))
            .order_by()
        )
        totals: dict[tuple[str, int, str], list] = defaultdict(lambda: [Decimal(0), 0, Decimal(0)])
        added = 0
        for group in groups:
            added += group["count"]
            for scope in (group["symbol"], ALL_SCOPE):
                total = totals[(scope, group["minute"], group["side"])]
                total[0] += group["usd"]
                total[1] += group["count"]
                total[2] = max(total[2], group["max_usd"])
        if totals:
            _merge(totals)
        state.last_id = top
        # Rows older than the horizon were skipped and old minutes are pruned: the
        # rollup answers from the first whole minute after the horizon on.
        horizon_minute = -(-datetime_to_ms(horizon) // 60_000) * 60
        covers_from = datetime.fromtimestamp(horizon_minute, tz=UTC)
        state.covers_from = max(filter(None, (state.covers_from, covers_from)))
        state.save(update_fields=["last_id", "covers_from", "updated_at"])
        LiquidationMinute.objects.filter(minute__lt=horizon_minute).delete()
    return added


def _merge(totals: dict[tuple[str, int, str], list]) -> None:
    minutes = [minute for _, minute, _ in totals]
    scopes = {scope for scope, _, _ in totals}
    existing = LiquidationMinute.objects.filter(
        minute__gte=min(minutes), minute__lte=max(minutes), scope__in=scopes
    ).values_list("scope", "minute", "side", "usd", "count", "max_usd")
    for scope, minute, side, usd, count, max_usd in existing:
        total = totals.get((scope, minute, side))
        if total is not None:
            total[0] += usd
            total[1] += count
            total[2] = max(total[2], max_usd)
    LiquidationMinute.objects.bulk_create(
        [
            LiquidationMinute(
                scope=scope, minute=minute, side=side, usd=usd, count=count, max_usd=max_usd
            )
            for (scope, minute, side), (usd, count, max_usd) in totals.items()
        ],
        update_conflicts=True,
        unique_fields=["scope", "minute", "side"],
        update_fields=["usd", "count", "max_usd"],
        batch_size=2000,
    )


def liquidation_rollup_catch_up(
    *, now: datetime | None = None, settled_before: datetime | None = None
) -> int:
    """Advance until no settled row is left past the watermark; return rows added."""
    added = 0
    while True:
        before = _watermark()
        added += liquidation_rollup_advance(now=now, settled_before=settled_before)
        if _watermark() == before:
            return added


def _watermark() -> int:
    return RollupState.objects.filter(id=1).values_list("last_id", flat=True).first() or 0

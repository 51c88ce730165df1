"""Reads for alerts: rules as matching sees them, new rows, cascade windows, due messages."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime

from django.db.models import QuerySet

from ..alert_models import AlertDelivery, AlertRule, AlertState, DeliveryState
from ..alerts.matching import RuleProgress, RuleSpec, split_list
from ..models import Liquidation

# Rows a cascade window may hold (a 60 s window of the whole market at Binance's ceiling
# is ~26,000 rows; a rule that wide is better served by a larger minimum per row).
MAX_WINDOW_ROWS = 20_000


def liquidation_venue_filter(
    queryset: QuerySet[Liquidation], *, venues: Collection[str]
) -> QuerySet[Liquidation]:
    """Keep rows of these venues (empty: all)."""
    if not venues:
        return queryset
    return queryset.filter(venue__in=venues)


def alert_rule_spec(rule: AlertRule) -> tuple[RuleSpec, RuleProgress]:
    """Return what matching needs of a rule, and its progress so far."""
    spec = RuleSpec(
        id=rule.pk,
        venues=split_list(rule.venues),
        symbols=split_list(rule.symbols, upper=True),
        side=rule.side,
        min_usd=rule.min_usd,
        cascade_seconds=rule.cascade_seconds,
        cascade_usd=rule.cascade_usd,
        cooldown_seconds=rule.cooldown_seconds,
        start_after_id=rule.start_after_id,
    )
    return spec, RuleProgress(fired_ms=rule.fired_ms, window_after_id=rule.window_after_id)


def alert_rules_active() -> list[tuple[RuleSpec, RuleProgress]]:
    """Return every enabled rule as (spec, progress)."""
    return [alert_rule_spec(rule) for rule in AlertRule.objects.filter(enabled=True)]


def alert_rules_list() -> QuerySet[AlertRule]:
    return AlertRule.objects.order_by("name")


def alerts_watermark() -> int | None:
    """Return the id up to which rows were matched (None before the first start)."""
    return AlertState.objects.filter(id=1).values_list("last_id", flat=True).first()


def liquidations_after(*, after_id: int, limit: int) -> list[Liquidation]:
    """Return up to limit rows stored after after_id, in id (storage) order."""
    return list(Liquidation.objects.filter(id__gt=after_id).order_by("id")[:limit])


def cascade_window_rows(
    *, spec: RuleSpec, after_id: int, up_to_id: int, since_ms: int
) -> list[Liquidation]:
    """Return the rule's matching rows with after_id < id <= up_to_id traded after since_ms."""
    queryset = Liquidation.objects.filter(
        id__gt=after_id,
        id__lte=up_to_id,
        notional_usd__gte=spec.min_usd,
        trade_time__gt=datetime.fromtimestamp(since_ms / 1000, tz=UTC),
    )
    if spec.symbols:
        queryset = queryset.filter(symbol__in=spec.symbols)
    if spec.side:
        queryset = queryset.filter(side=spec.side)
    queryset = liquidation_venue_filter(queryset, venues=spec.venues)
    return list(queryset.order_by("id")[:MAX_WINDOW_ROWS])


def alert_deliveries_due(
    *, now: datetime, exclude: Collection[int], limit: int
) -> list[AlertDelivery]:
    """Return messages of enabled rules waiting to be sent (oldest first), with their rule."""
    return list(
        AlertDelivery.objects.filter(
            state__in=(DeliveryState.PENDING, DeliveryState.RETRYING),
            next_attempt_at__lte=now,
            rule__enabled=True,
        )
        .exclude(id__in=exclude)
        .select_related("rule")
        .order_by("id")[:limit]
    )

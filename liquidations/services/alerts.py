"""Writes for alert delivery: what rules matched, the messages, and how sending went.

Exactly once: the hits of a round are written in the transaction that moves the
watermark past its rows, each unique per (rule, key); a message (AlertDelivery) is
written before it is sent and holds its hits, so after a restart what was due is sent
and nothing is matched twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..alert_models import AlertDelivery, AlertHit, AlertRule, AlertState, DeliveryState
from ..alerts.delivery import Outcome
from ..alerts.matching import Hit, RuleProgress
from ..selectors.feed import liquidation_last_id

logger = logging.getLogger(__name__)

# Liquidations listed in one message at most (a burst beyond waits for the next).
MAX_ITEMS_PER_MESSAGE = 100
# A Retry-After longer than this is not believed.
MAX_RETRY_AFTER_SECONDS = 3600.0

RuleResult = tuple[int, RuleProgress, list[Hit]]


def alerts_watermark_start() -> int:
    """Return the matched-up-to id; on the very first start, the newest id (no history)."""
    state, _ = AlertState.objects.get_or_create(id=1, defaults={"last_id": liquidation_last_id()})
    return state.last_id


def alert_hits_record(*, after_id: int, up_to_id: int, results: Sequence[RuleResult]) -> bool:
    """Record a round's hits and rules' progress, and move the watermark to up_to_id.

    False (nothing written) if the watermark is no longer after_id: another worker took
    the round.
    """
    with transaction.atomic():
        moved = AlertState.objects.filter(id=1, last_id=after_id).update(last_id=up_to_id)
        if not moved:
            return False
        hits = [
            AlertHit(
                rule_id=rule_id,
                key=hit.key,
                time_ms=hit.time_ms,
                items=hit.items,
                summary=hit.summary,
            )
            for rule_id, _progress, rule_hits in results
            for hit in rule_hits
        ]
        AlertHit.objects.bulk_create(hits, ignore_conflicts=True)
        for rule_id, progress, rule_hits in results:
            if rule_hits:
                AlertRule.objects.filter(id=rule_id).update(
                    fired_ms=progress.fired_ms, window_after_id=progress.window_after_id
                )
    return True


def alert_deliveries_compose(*, now: datetime, coalesce_seconds: float) -> int:
    """Turn undelivered hits into messages: one per rule per coalesce_seconds at most."""
    rule_ids = set(
        AlertHit.objects.filter(delivery__isnull=True)
        .values_list("rule_id", flat=True)
        .order_by()
        .distinct()
    )
    if not rule_ids:
        return 0
    recent = AlertDelivery.objects.filter(
        rule_id__in=rule_ids, created_at__gt=now - timedelta(seconds=coalesce_seconds)
    ).values_list("rule_id", flat=True)
    ready = sorted(rule_ids - set(recent))
    for rule_id in ready:
        _compose(rule_id=rule_id, now=now)
    return len(ready)


def _compose(*, rule_id: int, now: datetime) -> None:
    with transaction.atomic():
        hits = list(
            AlertHit.objects.filter(rule_id=rule_id, delivery__isnull=True).order_by("id")[
                :MAX_ITEMS_PER_MESSAGE
            ]
        )
        if not hits:
            return
        if hits[0].summary:  # a cascade is a message of its own
            hits = hits[:1]
        else:
            hits = [hit for hit in hits if not hit.summary]
        items = [item for hit in hits for item in hit.items]
        summary = hits[0].summary
        delivery = AlertDelivery.objects.create(
            rule_id=rule_id,
            items=items,
            summary=summary,
            count=summary["count"] if summary else len(items),
            total_usd=Decimal(summary["usd"]) if summary else _total(items),
            next_attempt_at=now,
        )
        AlertHit.objects.filter(id__in=[hit.id for hit in hits]).update(delivery=delivery)


def _total(items: Sequence[dict]) -> Decimal:
    return sum((Decimal(item["usd"]) for item in items), Decimal(0))


def _backoff(attempts: int) -> float:
    return min(
        settings.ALERT_RETRY_MAX_SECONDS,
        settings.ALERT_RETRY_INITIAL_SECONDS * 2 ** (attempts - 1),
    )


def alert_delivery_record(*, delivery_id: int, outcome: Outcome) -> str | None:
    """Record one attempt's outcome; return the delivery's new state (None: it is gone)."""
    now = timezone.now()
    delivery = AlertDelivery.objects.filter(id=delivery_id).first()
    if delivery is None:  # its rule was removed meanwhile
        return None
    attempts = delivery.attempts + 1
    values: dict[str, object] = {"attempts": attempts, "reason": outcome.reason}
    if outcome.state == "sent":
        values.update(state=DeliveryState.SENT, sent_at=now)
    elif outcome.state == "retry" and attempts < settings.ALERT_MAX_ATTEMPTS:
        wait = outcome.retry_after
        wait = _backoff(attempts) if wait is None else min(wait, MAX_RETRY_AFTER_SECONDS)
        values.update(state=DeliveryState.RETRYING, next_attempt_at=now + timedelta(seconds=wait))
    else:
        if outcome.state == "retry":
            values["reason"] = f"gave up after {attempts} attempts: {outcome.reason}"[:300]
        values["state"] = DeliveryState.FAILED
    AlertDelivery.objects.filter(id=delivery_id).update(**values)
    return str(values["state"])


def alert_deliveries_retry(*, ids: Sequence[int]) -> int:
    """Send these failed or retrying messages again at the next round (attempts restart)."""
    return AlertDelivery.objects.filter(
        id__in=ids, state__in=(DeliveryState.FAILED, DeliveryState.RETRYING)
    ).update(state=DeliveryState.RETRYING, attempts=0, next_attempt_at=timezone.now())

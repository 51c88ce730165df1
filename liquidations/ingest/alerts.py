"""The alerts task: beside the stats publisher in the worker, off the ingest's hot path.

Every ALERT_POLL_SECONDS, on its own database thread: match the rows stored since the
watermark against the enabled rules (read afresh each round, so a rule added, changed or
removed takes effect within a second), turn hits into messages (one per rule per
ALERT_COALESCE_SECONDS), and send the messages that are due, within each destination's
rate limit, retrying with backoff. See docs/alerts.md.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from django.conf import settings
from django.utils import timezone

from ..alert_models import AlertDelivery
from ..alerts.delivery import Outcome, OutgoingRequest, deliver
from ..alerts.destinations import destination_request
from ..alerts.matching import rule_hits, time_ms
from ..alerts.messages import AlertMessage
from ..alerts.ratelimit import RateLimiter
from ..selectors.alerts import (
    alert_deliveries_due,
    alert_rules_active,
    cascade_window_rows,
    liquidations_after,
)
from ..services.alerts import (
    RuleResult,
    alert_deliveries_compose,
    alert_delivery_record,
    alert_hits_record,
    alerts_watermark_start,
)
from .dbthread import DbThread

logger = logging.getLogger(__name__)

MATCH_BATCH = 2000  # rows per round: 4,000/s at the default poll, 9x Binance's ceiling
SEND_CONCURRENCY = 10
FAILURE_LOG_SECONDS = 60.0
# On stop, sends in flight get this long to finish and be recorded: a message the
# destination took but that was never marked sent would go again after the restart.
STOP_GRACE_SECONDS = 5.0


def alerts_match_round(after_id: int) -> int | None:
    """Match the rows stored after after_id against every enabled rule; return the new mark.

    None: no rule is enabled (nothing to match, compose or send this round).
    """
    rules = alert_rules_active()
    if not rules:
        return None  # a new rule starts after the newest row anyway
    # Rows up to the earliest rule start cannot trigger any rule: skip them unread.
    start = max(after_id, min(spec.start_after_id for spec, _ in rules))
    rows = liquidations_after(after_id=start, limit=MATCH_BATCH)
    if not rows:
        return after_id
    results: list[RuleResult] = []
    for spec, progress in rules:
        window = []
        if spec.is_cascade and spec.cascade_seconds:
            window = cascade_window_rows(
                spec=spec,
                after_id=max(spec.start_after_id, progress.window_after_id),
                up_to_id=start,
                since_ms=min(time_ms(row) for row in rows) - spec.cascade_seconds * 1000,
            )
        results.append((spec.id, progress, rule_hits(spec, progress, rows, window=window)))
    up_to = int(rows[-1].pk)
    if not alert_hits_record(after_id=after_id, up_to_id=up_to, results=results):
        return alerts_watermark_start()  # another worker matched this round: follow it
    return up_to


def message_of(delivery: AlertDelivery) -> AlertMessage:
    return AlertMessage(
        delivery_id=delivery.pk,
        rule_name=delivery.rule.name,
        items=delivery.items,
        summary=delivery.summary,
        count=delivery.count,
        total_usd=delivery.total_usd,
    )


class AlertsTask:
    """Match, compose and send alerts until cancelled (in-flight messages are resumed)."""

    def __init__(self) -> None:
        # Its own thread and connection: alerting never delays an ingest write.
        self._db = DbThread(name="alerts-db")
        self._limiter = RateLimiter()
        self._sending: dict[int, asyncio.Task[None]] = {}
        # Outcomes the database did not take yet (it was down): recorded before new sends.
        self._unrecorded: dict[int, Outcome] = {}
        self._watermark: int | None = None
        self._failure_logged = 0.0
        self.sent = 0

    async def run(self) -> None:
        try:
            async with aiohttp.ClientSession() as session:
                try:
                    while True:
                        try:
                            await self.round(session)
                        except Exception:
                            self._log_failure()
                        await asyncio.sleep(settings.ALERT_POLL_SECONDS)
                finally:
                    await self._finish_sends(timeout=STOP_GRACE_SECONDS)
        finally:
            await self._db.aclose(wait=False)

    async def _finish_sends(self, *, timeout: float) -> None:
        """Let the sends in flight end and record their outcome; cancel any left after timeout.

        Inside the session: closing it first would cut them off.
        """
        sending = list(self._sending.values())
        if sending:
            _done, pending = await asyncio.wait(sending, timeout=timeout)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning(
                    "%d alert(s) still sending %g s after the stop: sent again after the "
                    "restart (receivers can drop repeats by X-OrderFox-Delivery)",
                    len(pending),
                    timeout,
                )
            await asyncio.gather(*sending, return_exceptions=True)

    async def round(self, session: aiohttp.ClientSession) -> None:
        if self._watermark is None:
            self._watermark = await self._db.call(alerts_watermark_start)
        matched = await self._db.call(alerts_match_round, self._watermark)
        if matched is None and not self._unrecorded:
            return  # no enabled rule: one query a round, nothing to send
        self._watermark = self._watermark if matched is None else matched
        await self._db.call(
            alert_deliveries_compose,
            now=timezone.now(),
            coalesce_seconds=settings.ALERT_COALESCE_SECONDS,
        )
        for delivery_id, outcome in list(self._unrecorded.items()):
            await self._db.call(alert_delivery_record, delivery_id=delivery_id, outcome=outcome)
            del self._unrecorded[delivery_id]
        await self._send_due(session)

    async def _send_due(self, session: aiohttp.ClientSession) -> None:
        free = SEND_CONCURRENCY - len(self._sending)
        if free <= 0:
            return
        due = await self._db.call(
            alert_deliveries_due,
            now=timezone.now(),
            exclude=[*self._sending, *self._unrecorded],
            limit=free * 4,
        )
        for delivery in due:
            if len(self._sending) >= SEND_CONCURRENCY:
                return
            try:
                request = destination_request(delivery.rule, message_of(delivery))
            except ValueError as exc:  # a rule edited into something unusable
                await self._db.call(
                    alert_delivery_record,
                    delivery_id=delivery.pk,
                    outcome=Outcome("failed", str(exc)),
                )
                continue
            if self._limiter.wait_time(request.limit_key, request.rate) > 0:
                continue  # this destination's limit: next round
            self._limiter.take(request.limit_key, request.rate)
            self._sending[delivery.pk] = asyncio.create_task(
                self._send(session, delivery.pk, delivery.rule.name, request),
                name=f"alert-{delivery.pk}",
            )

    async def _send(
        self, session: aiohttp.ClientSession, delivery_id: int, rule: str, request: OutgoingRequest
    ) -> None:
        try:
            outcome = await deliver(session, request, timeout=settings.ALERT_TIMEOUT_SECONDS)
            if outcome.throttled:
                self._limiter.block(request.limit_key, outcome.retry_after or 1.0)
            try:
                state = await self._db.call(
                    alert_delivery_record, delivery_id=delivery_id, outcome=outcome
                )
            except Exception:
                logger.exception("Recording alert %s failed; retrying next round", delivery_id)
                self._unrecorded[delivery_id] = outcome
                return
            if outcome.state == "sent":
                self.sent += 1
                logger.info("Alert %s of rule %r sent", delivery_id, rule)
            else:
                logger.warning(
                    "Alert %s of rule %r %s: %s", delivery_id, rule, state, outcome.reason
                )
        finally:
            self._sending.pop(delivery_id, None)

    def _log_failure(self) -> None:
        # A database outage fails every round: say so once a minute, not twice a second.
        now = time.monotonic()
        if now - self._failure_logged >= FAILURE_LOG_SECONDS:
            self._failure_logged = now
            logger.exception("An alerts round failed; retrying")

"""Alert rules, what they matched, and the messages sent for them (issue #15).

Imported by models.py, so Django registers them with the liquidations app.
"""

from __future__ import annotations

from typing import Any

from django.db import models


class Destination(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (JSON POST, HMAC-signed)"
    TELEGRAM = "telegram", "Telegram bot"
    DISCORD = "discord", "Discord webhook"


class AlertRule(models.Model):
    """Which stored liquidations to alert on, and where to send the message.

    Matching reads only rows with an id above start_after_id: the newest id when the
    rule was created or last changed, so history never triggers it.
    """

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    venues = models.CharField(
        max_length=100,
        blank=True,
        help_text="Comma-separated venues (binance, bybit, okx); blank: all.",
    )
    symbols = models.TextField(blank=True, help_text="Comma-separated symbols; blank: all.")
    side = models.CharField(
        max_length=4,
        blank=True,
        choices=[("SELL", "Longs liquidated (SELL)"), ("BUY", "Shorts liquidated (BUY)")],
        help_text="The liquidation order's side; blank: both.",
    )
    min_usd = models.DecimalField(max_digits=30, decimal_places=8, default=0)
    cascade_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Cascade: the window in seconds (with cascade USD)."
    )
    cascade_usd = models.DecimalField(
        max_digits=30,
        decimal_places=8,
        null=True,
        blank=True,
        help_text="Cascade: alert when matching liquidations within the window sum to this.",
    )
    cooldown_seconds = models.PositiveIntegerField(
        default=0, help_text="After a trigger, ignore matches for this long (by trade time)."
    )
    destination = models.CharField(max_length=10, choices=Destination.choices)
    webhook_url = models.URLField(max_length=500, blank=True)
    webhook_secret = models.CharField(max_length=200, blank=True)
    telegram_token = models.CharField(max_length=200, blank=True)
    telegram_chat_id = models.CharField(max_length=100, blank=True)
    discord_webhook = models.CharField(
        max_length=500, blank=True, help_text="The Discord webhook URL, or its id/token."
    )
    start_after_id = models.BigIntegerField(default=0, editable=False)
    # Matching progress, kept by the alerts task (reset when the rule changes).
    fired_ms = models.BigIntegerField(null=True, blank=True, editable=False)
    window_after_id = models.BigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_cascade(self) -> bool:
        return bool(self.cascade_seconds and self.cascade_usd)

    def secrets(self) -> list[str]:
        """Every secret of this rule, to keep them out of logs and reasons."""
        values = [self.webhook_secret, self.telegram_token, self.discord_webhook]
        return [value for value in values if value]


class AlertHit(models.Model):
    """One trigger of a rule: a liquidation ("liq:<id>") or a cascade window ("cascade:<id>").

    Unique per rule and key, and written in the transaction that advances the alerts
    watermark: a row triggers a rule at most once, whatever restarts or replays.
    """

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="hits")
    key = models.CharField(max_length=40)
    time_ms = models.BigIntegerField()
    items: Any = models.JSONField()  # the liquidations, as the webhook payload lists them
    summary: Any = models.JSONField(null=True, blank=True)  # cascade: count, usd, seconds
    delivery = models.ForeignKey(
        "AlertDelivery", null=True, blank=True, on_delete=models.SET_NULL, related_name="hits"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "key"], name="alert_hit_once")]
        indexes = [
            models.Index(
                fields=["rule"],
                condition=models.Q(delivery__isnull=True),
                name="alert_hit_undelivered",
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule_id} {self.key}"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class AlertDelivery(models.Model):
    """One message for one rule: written before it is sent, then sent, retried or failed."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(
        max_length=10, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    items: Any = models.JSONField()
    summary: Any = models.JSONField(null=True, blank=True)
    count = models.PositiveIntegerField()
    total_usd = models.DecimalField(max_digits=30, decimal_places=8)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "alert deliveries"
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="alert_delivery_due")]

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.count} liquidation(s), {self.state}"


class AlertState(models.Model):
    """How far the alerts task has matched the liquidation table (one row)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"alerts matched up to id {self.last_id}"

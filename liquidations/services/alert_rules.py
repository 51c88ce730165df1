"""Writes: alert rules, added, changed or removed (admin and `manage.py alerts`).

A rule applies to rows stored after it was created or last changed, never to history:
each save records the newest liquidation id as the rule's start and resets its progress.
The running worker reads rules every round (ALERT_POLL_SECONDS), so no restart is needed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from ..alert_models import AlertRule, Destination
from ..alerts.discord import discord_webhook_parts
from ..alerts.matching import split_list
from ..alerts.targets import TargetRefused, target_check
from ..selectors.feed import liquidation_last_id
from ..upstream.events import is_symbol

VENUES = frozenset({"binance", "bybit", "okx"})
_REQUIRED = {
    Destination.WEBHOOK: ("webhook_url", "webhook_secret"),
    Destination.TELEGRAM: ("telegram_token", "telegram_chat_id"),
    Destination.DISCORD: ("discord_webhook",),
}


def alert_rule_validate(*, rule: AlertRule) -> None:
    """Raise ValidationError (by field, without secrets) if the rule cannot work."""
    errors: dict[str, str] = {}
    for name in _REQUIRED.get(Destination(rule.destination), ()):
        if not getattr(rule, name):
            errors[name] = f"required for a {rule.destination} rule"
    if unknown := split_list(rule.venues) - VENUES:
        errors["venues"] = f"unknown venue(s): {', '.join(sorted(unknown))}"
    if bad := [s for s in split_list(rule.symbols, upper=True) if not is_symbol(s)]:
        errors["symbols"] = f"not symbols: {', '.join(sorted(bad))[:100]}"
    if rule.min_usd < 0:
        errors["min_usd"] = "must be 0 or more"
    if bool(rule.cascade_seconds) != bool(rule.cascade_usd):
        errors["cascade_usd"] = "a cascade needs both its window (seconds) and its amount"
    if rule.cascade_seconds and rule.cascade_seconds > 86_400:
        errors["cascade_seconds"] = "at most 86400 (one day)"
    if rule.destination == Destination.WEBHOOK and rule.webhook_url:
        try:
            target_check(rule.webhook_url)
        except TargetRefused as exc:
            errors["webhook_url"] = str(exc)
    if rule.destination == Destination.DISCORD and rule.discord_webhook:
        try:
            discord_webhook_parts(rule.discord_webhook)
        except ValueError as exc:
            errors["discord_webhook"] = str(exc)
    if errors:
        raise ValidationError(errors)


def _normalize(rule: AlertRule) -> None:
    rule.venues = ",".join(sorted(split_list(rule.venues)))
    rule.symbols = ",".join(sorted(split_list(rule.symbols, upper=True)))
    rule.side = rule.side.upper()


def alert_rule_save(*, rule: AlertRule) -> AlertRule:
    """Validate and save a new or changed rule; it applies to rows stored from now on."""
    _normalize(rule)
    alert_rule_validate(rule=rule)
    rule.start_after_id = liquidation_last_id()
    rule.fired_ms = None
    rule.window_after_id = 0
    with transaction.atomic():
        if not rule.name:
            rule.name = f"rule-{AlertRule.objects.count() + 1}"
            while AlertRule.objects.filter(name=rule.name).exists():
                rule.name += "+"
        rule.save()
    return rule


def alert_rule_create(
    *, destination: str, name: str = "", min_usd: Decimal = Decimal(0), **fields: Any
) -> AlertRule:
    """Create a rule (fields as on AlertRule); raise ValidationError if it cannot work."""
    if destination not in Destination.values:
        raise ValidationError({"destination": f"one of {', '.join(Destination.values)}"})
    if name and AlertRule.objects.filter(name=name).exists():
        raise ValidationError({"name": f"a rule named {name!r} exists"})
    return alert_rule_save(
        rule=AlertRule(name=name, destination=destination, min_usd=min_usd, **fields)
    )


def alert_rule_remove(*, name: str) -> bool:
    """Remove the rule with this name (its hits and deliveries too); False if none."""
    deleted, _ = AlertRule.objects.filter(name=name).delete()
    return bool(deleted)

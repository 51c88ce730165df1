"""The request for a message to a rule's destination (one module per destination)."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from .delivery import OutgoingRequest
from .discord import discord_request, discord_webhook_parts
from .messages import AlertMessage
from .telegram import telegram_request
from .webhook import webhook_request


class RuleTarget(Protocol):
    """Where a rule sends (an AlertRule qualifies)."""

    destination: str
    webhook_url: str
    webhook_secret: str
    telegram_token: str
    telegram_chat_id: str
    discord_webhook: str


def destination_request(rule: RuleTarget, message: AlertMessage) -> OutgoingRequest:
    """Build the request for rule's destination; ValueError for an unknown one."""
    if rule.destination == "webhook":
        return webhook_request(rule, message)
    if rule.destination == "telegram":
        return telegram_request(rule, message)
    if rule.destination == "discord":
        return discord_request(rule, message)
    raise ValueError(f"unknown alert destination {rule.destination!r}")


def target_label(rule: RuleTarget) -> str:
    """Where a rule sends, without its secrets (a webhook shows its origin only)."""
    if rule.destination == "webhook":
        parts = urlsplit(rule.webhook_url)
        return f"webhook {parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    if rule.destination == "telegram":
        return f"telegram chat {rule.telegram_chat_id}"
    try:
        return f"discord webhook {discord_webhook_parts(rule.discord_webhook)[0]}"
    except ValueError:
        return "discord (invalid webhook)"

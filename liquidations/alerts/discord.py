"""Discord: a webhook message (Markdown escaped, no mentions).

Discord allows 5 requests per 2 seconds per webhook (more answers 429 with
Retry-After); the base URL is ALERT_DISCORD_API_URL, the rule keeps the webhook's
id and token (pasted as Discord shows the URL, or as "id/token").
"""

from __future__ import annotations

import re
from typing import Protocol

import orjson
from django.conf import settings

from .delivery import OutgoingRequest
from .messages import AlertMessage, discord_text
from .ratelimit import Rate

RATE = Rate(count=5, per=2.0)  # per webhook
_WEBHOOK = re.compile(r"(?:^|/webhooks/)(\d+)/([A-Za-z0-9_.-]+)/?$")


class DiscordRule(Protocol):
    discord_webhook: str


def discord_webhook_parts(value: str) -> tuple[str, str]:
    """Return (id, token) of a Discord webhook URL or "id/token"; ValueError if neither."""
    match = _WEBHOOK.search(value.strip().split("?", 1)[0])
    if match is None:
        raise ValueError(
            "expected a Discord webhook URL (https://discord.com/api/webhooks/<id>/<token>) "
            "or <id>/<token>"
        )
    return match.group(1), match.group(2)


def discord_request(rule: DiscordRule, message: AlertMessage) -> OutgoingRequest:
    webhook_id, token = discord_webhook_parts(rule.discord_webhook)
    body = orjson.dumps({"content": discord_text(message), "allowed_mentions": {"parse": []}})
    return OutgoingRequest(
        url=f"{settings.ALERT_DISCORD_API_URL}/webhooks/{webhook_id}/{token}",
        body=body,
        headers={"Content-Type": "application/json"},
        limit_key=f"discord:{webhook_id}",
        rate=RATE,
        secrets=(rule.discord_webhook, token),
    )

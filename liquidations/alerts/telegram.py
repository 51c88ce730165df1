"""Telegram: a bot's sendMessage to one chat, in HTML parse mode (text escaped).

Telegram allows about one message per second per chat (more answers 429 with
Retry-After); the base URL is ALERT_TELEGRAM_API_URL.
"""

from __future__ import annotations

from typing import Protocol

import orjson
from django.conf import settings

from .delivery import OutgoingRequest
from .messages import AlertMessage, telegram_text
from .ratelimit import Rate

RATE = Rate(count=1, per=1.0)  # per chat


class TelegramRule(Protocol):
    telegram_token: str
    telegram_chat_id: str


def telegram_request(rule: TelegramRule, message: AlertMessage) -> OutgoingRequest:
    body = orjson.dumps(
        {
            "chat_id": rule.telegram_chat_id,
            "text": telegram_text(message),
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
    )
    return OutgoingRequest(
        url=f"{settings.ALERT_TELEGRAM_API_URL}/bot{rule.telegram_token}/sendMessage",
        body=body,
        headers={"Content-Type": "application/json"},
        limit_key=f"telegram:{rule.telegram_chat_id}",
        rate=RATE,
        secrets=(rule.telegram_token,),
    )

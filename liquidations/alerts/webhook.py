"""The generic webhook: a JSON POST signed with HMAC-SHA256 under the rule's secret.

Body: {"rule": name, "liquidations": [{"id", "venue", "symbol", "side", "quantity",
"price", "usd", "time_ms"}, ...]} (plus "cascade": {"seconds", "count", "usd"} for a
cascade). Headers: X-OrderFox-Signature: sha256=<hex of HMAC(secret, raw body)>, and
X-OrderFox-Delivery: <id>, the same on every retry of one message, to drop a repeat.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Protocol

import orjson

from .delivery import OutgoingRequest
from .messages import AlertMessage

SIGNATURE_HEADER = "X-OrderFox-Signature"
DELIVERY_HEADER = "X-OrderFox-Delivery"


class WebhookRule(Protocol):
    webhook_url: str
    webhook_secret: str


def signature(secret: str, body: bytes) -> str:
    """The X-OrderFox-Signature value of a body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_request(rule: WebhookRule, message: AlertMessage) -> OutgoingRequest:
    payload: dict[str, Any] = {"rule": message.rule_name, "liquidations": list(message.items)}
    if message.summary:
        payload["cascade"] = message.summary
    body = orjson.dumps(payload)
    return OutgoingRequest(
        url=rule.webhook_url,
        body=body,
        headers={
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(rule.webhook_secret, body),
            DELIVERY_HEADER: str(message.delivery_id),
        },
        limit_key=f"webhook:{rule.webhook_url}",
        rate=None,  # one message per rule per few seconds (coalescing) is the only limit
        secrets=(rule.webhook_secret,),
        check_target=True,
    )

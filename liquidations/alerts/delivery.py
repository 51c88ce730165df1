"""Send one prepared request and say what came of it: sent, retry (when), or failed (why).

Nothing here touches the database; the alerts task records the outcome. Reasons never
carry a secret: the URL of a Telegram or Discord call holds its token, so every reason
passes through redact() with the rule's secrets.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp

from .ratelimit import Rate
from .targets import TargetRefused, target_check_async

REASON_LENGTH = 300


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """A POST ready to go, with the key and rate its destination allows."""

    url: str
    body: bytes
    headers: dict[str, str]
    limit_key: str
    rate: Rate | None
    secrets: tuple[str, ...] = field(default=(), repr=False)
    check_target: bool = False  # a user-given webhook URL: refuse non-public addresses


@dataclass(frozen=True, slots=True)
class Outcome:
    state: str  # "sent", "retry" or "failed"
    reason: str = ""
    retry_after: float | None = None  # seconds the destination asked us to wait
    throttled: bool = False  # HTTP 429: pause everything to this destination


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (and any piece of one longer than 8 characters) in text."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "[secret]")
            for piece in secret.split("/"):
                if len(piece) > 8:
                    text = text.replace(piece, "[secret]")
    return text[:REASON_LENGTH]


def retry_after_seconds(value: str | None) -> float | None:
    """Parse Retry-After: delta seconds or an HTTP date (None if absent or unreadable)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


async def deliver(
    session: aiohttp.ClientSession, request: OutgoingRequest, *, timeout: float
) -> Outcome:
    """POST the request once; classify the answer. Never raises for network failures."""
    try:
        if request.check_target:
            await target_check_async(request.url)
        async with session.post(
            request.url,
            data=request.body,
            headers=request.headers,
            allow_redirects=False,  # a redirect could lead to a private address
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            body = await response.text(errors="replace")
            return _classify(response.status, response.headers.get("Retry-After"), body, request)
    except TargetRefused as exc:
        return Outcome("failed", redact(str(exc), request.secrets))
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Outcome("retry", redact(reason, request.secrets))


def _classify(status: int, retry_after: str | None, body: str, request: OutgoingRequest) -> Outcome:
    if 200 <= status < 300:
        return Outcome("sent")
    reason = redact(f"HTTP {status}: {' '.join(body.split())[:200]}".rstrip(": "), request.secrets)
    wait = retry_after_seconds(retry_after)
    if status == 429:
        return Outcome("retry", reason, retry_after=wait, throttled=True)
    if status >= 500 or status == 408:
        return Outcome("retry", reason, retry_after=wait)
    return Outcome("failed", reason)

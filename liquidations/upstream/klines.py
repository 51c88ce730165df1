"""Binance REST market data (klines, depth snapshots) within the request-weight budget.

Binance allows 2,400 request weight per minute per IP and reports the weight used in the
current minute in `X-MBX-USED-WEIGHT-1M` on every answer. 429 means slow down; sending on
after it earns a 418, an IP ban from minutes to days; both carry `Retry-After` (seconds).
One RestLimiter per process: it refuses a request (RateLimited, without sending it) while
a Retry-After runs, or when the request would take the minute's weight past the share
this process allows itself. An IP ban is never risked: after a 429 nothing is sent until
Retry-After has passed, so a second 429 (and with it a 418) cannot happen.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import aiohttp
import orjson

from .binance_market import Candle, DepthSnapshot, depth_snapshot_parse, klines_parse
from .client import describe_error
from .events import MalformedFrame

logger = logging.getLogger(__name__)

KLINES_PATH = "/fapi/v1/klines"
DEPTH_PATH = "/fapi/v1/depth"
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
WEIGHT_LIMIT_PER_MINUTE = 2400
# Without a Retry-After header: a 429 waits a minute (the weight window), a 418 longer.
DEFAULT_RETRY_429_SECONDS = 60.0
DEFAULT_RETRY_418_SECONDS = 300.0
MAX_KLINES = 1500


class RestUnavailable(Exception):
    """The REST API could not answer (unreachable, HTTP error, invalid body)."""


class RateLimited(RestUnavailable):
    """Not sent: the exchange asked us to wait, or the weight budget is spent."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def klines_weight(limit: int) -> int:
    """Binance's weight of GET /fapi/v1/klines for a limit."""
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def depth_weight(limit: int) -> int:
    """Binance's weight of GET /fapi/v1/depth for a limit (5/10/20/50/100/500/1000)."""
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


@dataclass
class RestLimiter:
    """This process's view of the IP's request weight, and any Retry-After in force."""

    # The share of the minute's weight this process lets itself reach.
    budget: int = WEIGHT_LIMIT_PER_MINUTE * 3 // 4
    used_weight: int = 0
    used_minute: int = -1
    blocked_until: float = 0.0
    requests_sent: int = 0
    refused: int = 0

    def check(self, weight: int) -> None:
        """Raise RateLimited if a request of this weight must not be sent now."""
        now = time.time()
        if now < self.blocked_until:
            self.refused += 1
            raise RateLimited(
                f"Binance asked to wait {self.blocked_until - now:.0f} s more",
                retry_after=self.blocked_until - now,
            )
        minute = int(now // 60)
        if minute == self.used_minute and self.used_weight + weight > self.budget:
            self.refused += 1
            raise RateLimited(
                f"request weight {self.used_weight} of {self.budget} used this minute",
                retry_after=60 - now % 60,
            )

    def record(self, *, status: int, headers: dict[str, str], weight: int) -> None:
        """Take the weight header of an answer; obey a 429/418's Retry-After."""
        now = time.time()
        self.requests_sent += 1
        used = headers.get(WEIGHT_HEADER.lower())
        minute = int(now // 60)
        if used is not None and used.isdigit():
            self.used_weight, self.used_minute = int(used), minute
        elif minute == self.used_minute:
            self.used_weight += weight
        else:
            self.used_weight, self.used_minute = weight, minute
        if status in (418, 429):
            default = DEFAULT_RETRY_418_SECONDS if status == 418 else DEFAULT_RETRY_429_SECONDS
            retry = _retry_after(headers.get("retry-after"), default)
            self.blocked_until = max(self.blocked_until, now + retry)
            logger.warning(
                "Binance REST answered %d: no request for %.0f s (weight used %d)",
                status,
                retry,
                self.used_weight,
            )


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(1.0, float(value)) if value else default
    except ValueError:
        return default


async def rest_get(
    *,
    base_url: str,
    path: str,
    params: dict[str, str],
    weight: int,
    limiter: RestLimiter,
    timeout: float = 10.0,
) -> object:
    """GET one weighted REST path and return its decoded JSON, or raise RestUnavailable."""
    limiter.check(weight)
    url = f"{base_url.rstrip('/')}{path}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, params=params) as response:
                body = await response.read()
                headers = {k.lower(): v for k, v in response.headers.items()}
                limiter.record(status=response.status, headers=headers, weight=weight)
                status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise RestUnavailable(f"{url} unreachable: {describe_error(exc)}") from None
    if status in (418, 429):
        raise RateLimited(
            f"{url} answered HTTP {status}", retry_after=limiter.blocked_until - time.time()
        )
    if status != 200:
        raise RestUnavailable(f"{url} answered HTTP {status}")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RestUnavailable(f"{url} did not return JSON: {exc}") from None


async def klines_fetch(
    *, base_url: str, symbol: str, timeframe: str, limit: int, limiter: RestLimiter
) -> list[Candle]:
    """GET /fapi/v1/klines: the newest `limit` candles, oldest first."""
    limit = max(1, min(limit, MAX_KLINES))
    payload = await rest_get(
        base_url=base_url,
        path=KLINES_PATH,
        params={"symbol": symbol, "interval": timeframe, "limit": str(limit)},
        weight=klines_weight(limit),
        limiter=limiter,
    )
    try:
        return klines_parse(payload)
    except MalformedFrame as exc:
        raise RestUnavailable(f"klines of {symbol} {timeframe}: {exc}") from None


async def depth_fetch(
    *, base_url: str, symbol: str, limit: int, limiter: RestLimiter
) -> DepthSnapshot:
    """GET /fapi/v1/depth: the order book snapshot to start a local book from."""
    payload = await rest_get(
        base_url=base_url,
        path=DEPTH_PATH,
        params={"symbol": symbol, "limit": str(limit)},
        weight=depth_weight(limit),
        limiter=limiter,
    )
    try:
        return depth_snapshot_parse(payload)
    except MalformedFrame as exc:
        raise RestUnavailable(f"depth snapshot of {symbol}: {exc}") from None

"""Candles for the symbol page: GET /fapi/v1/klines, cached per (symbol, timeframe).

One cache and one RestLimiter per web process. Each fetch asks for the newest
KLINES_FETCHED candles (weight 5) and every page width is served from them for
MARKET_KLINES_CACHE_SECONDS; the live candle comes from the kline stream meanwhile. While
Binance is unreachable or asks to wait, a cached answer up to STALE_SECONDS old is served,
and beyond that the caller shows the volume with a notice instead of candles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings

from ..upstream.binance_market import Candle
from ..upstream.klines import RestLimiter, RestUnavailable, klines_fetch

KLINES_FETCHED = 1000
STALE_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Candles:
    candles: list[Candle]
    error: str | None = None
    stale: bool = False


_limiter = RestLimiter()
_cache: dict[tuple[str, str], tuple[float, list[Candle]]] = {}


def candles_limiter() -> RestLimiter:
    """This process's weight accounting for REST market data (tests inspect it)."""
    return _limiter


def candles_cache_clear() -> None:
    global _limiter
    _cache.clear()
    _limiter = RestLimiter()


async def candles_get(*, symbol: str, timeframe: str, limit: int) -> Candles:
    """Return the newest `limit` candles (at most KLINES_FETCHED), or why there are none."""
    key = (symbol, timeframe)
    now = time.monotonic()
    cached = _cache.get(key)
    if cached is not None and now - cached[0] < settings.MARKET_KLINES_CACHE_SECONDS:
        return Candles(cached[1][-limit:])
    try:
        candles = await klines_fetch(
            base_url=settings.BINANCE_REST_BASE_URL,
            symbol=symbol,
            timeframe=timeframe,
            limit=KLINES_FETCHED,
            limiter=_limiter,
        )
    except RestUnavailable as exc:
        if cached is not None and now - cached[0] < STALE_SECONDS:
            return Candles(cached[1][-limit:], stale=True)
        return Candles([], error=f"Candles are unavailable: {exc}")
    _cache[key] = (now, candles)
    return Candles(candles[-limit:])

"""The symbol page's chart data: candles, the liquidation volume on exactly their range,
and the markers of large liquidations (GET /api/v1/market-chart/<SYMBOL>/<timeframe>)."""

from __future__ import annotations

import time
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from ..selectors import volume
from ..selectors.filters import InvalidFilter, parse_venue
from ..selectors.market import Marker, liquidation_markers, symbol_market_spec
from ..upstream.binance_market import Candle
from ..upstream.events import ms_to_datetime, symbol_normalize
from .api import volume_item
from .candles import candles_get

MAX_CANDLES = 1000
MIN_CANDLES = 1
DEFAULT_CANDLES = 500
DEFAULT_MARKER_USD = Decimal(100_000)
MAX_USD = Decimal(10) ** 12


def _bad(detail: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_CANDLES
    try:
        value = int(raw, 10)
    except ValueError:
        raise ValueError(f"limit must be an integer, got {raw[:20]!r}") from None
    if not MIN_CANDLES <= value <= MAX_CANDLES:
        raise ValueError(f"limit must be between {MIN_CANDLES} and {MAX_CANDLES}, got {value}")
    return value


def _min_usd(raw: str | None) -> Decimal:
    if raw is None or raw == "":
        return DEFAULT_MARKER_USD
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"min_usd must be a number, got {raw[:20]!r}") from None
    if not value.is_finite() or not 0 <= value < MAX_USD:
        raise ValueError(f"min_usd must be between 0 and {MAX_USD:,}, got {raw[:20]!r}")
    return value


def chart_range(*, candles: list[Candle], seconds: int, limit: int, now_ms: int) -> tuple[int, int]:
    """[start, end) in ms: the candles' own range, or the latest `limit` buckets without them."""
    size = seconds * 1000
    if candles:
        return candles[0].open_ms, candles[-1].open_ms + size
    end = now_ms // size * size + size
    return end - limit * size, end


def _candle_item(candle: Candle) -> dict[str, Any]:
    return {
        "time": candle.open_ms // 1000,
        "open": candle.open,
        "high": candle.high,
        "low": candle.low,
        "close": candle.close,
        "volume": candle.volume,
    }


def _marker_item(marker: Marker, seconds: int) -> dict[str, Any]:
    return {
        "time": marker.time_ms // 1000 // seconds * seconds,
        "time_ms": marker.time_ms,
        "side": marker.side,
        "usd": str(marker.usd),
        "price": str(marker.price),
    }


def _volume_and_markers(
    *,
    symbol: str,
    seconds: int,
    start_ms: int,
    end_ms: int,
    min_usd: Decimal,
    venue: str | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    buckets = volume.liquidation_volume(
        symbol=symbol,
        seconds=seconds,
        start=ms_to_datetime(start_ms),
        end=ms_to_datetime(end_ms),
        venue=venue,
    )
    markers = liquidation_markers(
        symbol=symbol, start_ms=start_ms, end_ms=end_ms, min_usd=min_usd, venue=venue
    )
    return [volume_item(b) for b in buckets], [_marker_item(m, seconds) for m in markers]


@require_GET
async def market_chart(request: HttpRequest, symbol: str, timeframe: str) -> HttpResponse:
    """Candles (Binance klines, cached), and the liquidations on exactly their time range."""
    seconds = volume.TIMEFRAMES.get(timeframe)
    if seconds is None:
        return _bad(f"timeframe must be one of {', '.join(volume.TIMEFRAMES)}")
    try:
        limit = _limit(request.GET.get("limit"))
        min_usd = _min_usd(request.GET.get("min_usd"))
        venue = parse_venue(request.GET.get("venue", "")) or None
    except (ValueError, InvalidFilter) as exc:
        return _bad(str(exc))
    name = symbol_normalize(symbol)
    spec = await sync_to_async(symbol_market_spec)(symbol=name) if name else None
    if name is None or spec is None:
        return _bad(f"unknown symbol {symbol[:40]!r}", status=404)
    candles = await candles_get(symbol=name, timeframe=timeframe, limit=limit)
    start, end = chart_range(
        candles=candles.candles, seconds=seconds, limit=limit, now_ms=int(time.time() * 1000)
    )
    buckets, markers = await sync_to_async(_volume_and_markers)(
        symbol=name, seconds=seconds, start_ms=start, end_ms=end, min_usd=min_usd, venue=venue
    )
    body = {
        "symbol": name,
        "timeframe": timeframe,
        "start_time": start,
        "end_time": end,
        "candles": [_candle_item(c) for c in candles.candles],
        "candles_error": candles.error,
        "candles_stale": candles.stale,
        "volume": buckets,
        "markers": markers,
        "min_usd": str(min_usd),
    }
    return HttpResponse(orjson.dumps(body), content_type="application/json")

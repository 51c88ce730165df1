"""The JSON API: thin views that validate parameters, call selectors and shape items."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

import orjson
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from ..selectors import volume
from ..selectors.feed import liquidation_feed
from ..selectors.symbols import symbol_exists
from ..upstream.events import (
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    datetime_to_ms,
    ms_to_datetime,
    symbol_normalize,
)
from ..upstream.orderfox_api import ITEM_FIELDS, USD_ITEM_KEY, decimal_text

ORDERS_DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
DEFAULT_SPAN = timedelta(hours=24)


class BadRequest(ValueError):
    """A parameter the API cannot use; the message tells the client which and why."""


class NotFound(LookupError):
    pass


def _error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def api_view(view):
    """Turn BadRequest/NotFound raised while reading parameters into JSON 400/404."""

    def wrapped(request: HttpRequest, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except BadRequest as exc:
            return _error(400, str(exc))
        except NotFound as exc:
            return _error(404, str(exc))

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return require_GET(wrapped)


def int_param(request: HttpRequest, name: str, *, default: int | None = None) -> int | None:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw, 10)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw[:40]!r}") from None


def time_param(request: HttpRequest, name: str, *, default: datetime) -> datetime:
    value = int_param(request, name)
    if value is None:
        return default
    if not MIN_TIMESTAMP_MS <= value < MAX_TIMESTAMP_MS:
        raise BadRequest(f"{name} must be epoch milliseconds between 2000 and 2200, got {value}")
    return ms_to_datetime(value)


def time_range(request: HttpRequest, start_name: str, end_name: str) -> tuple[datetime, datetime]:
    """Return [start, end) from epoch-ms parameters; defaults: the last 24 hours."""
    end = time_param(request, end_name, default=timezone.now())
    start = time_param(request, start_name, default=end - DEFAULT_SPAN)
    if start >= end:
        raise BadRequest(f"{start_name} must be before {end_name}")
    return start, end


def limit_param(request: HttpRequest, *, default: int) -> int:
    limit = int_param(request, "limit", default=default)
    assert limit is not None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def symbol_param(raw: str | None, *, required: bool = False) -> str | None:
    """Return the known symbol named by raw (any case), None if absent and optional."""
    if raw is None or raw == "":
        if required:
            raise BadRequest("symbol is required")
        return None
    symbol = symbol_normalize(raw)
    if symbol is None or not symbol_exists(symbol=symbol):
        raise NotFound(f"unknown symbol {raw[:40]!r}")
    return symbol


USD_UNITS = (("B", 1e9), ("M", 1e6), ("K", 1e3))


def format_usd(value: Decimal) -> str:
    """Return a USD amount with K/M/B units and two decimals: 1.23K, -4.56M, 999.00.

    Display only, in floats (thousands per response): 15 significant digits are plenty
    for two decimals of a unit.
    """
    amount = float(value)
    magnitude = abs(amount)
    for unit, size in USD_UNITS:
        if magnitude >= size:
            return f"{amount / size:.2f}{unit}"
    return f"{amount:.2f}"


class ItemSource(Protocol):
    """A Liquidation, or a row of selectors.history.liquidation_values_page."""

    @property
    def notional_usd(self) -> Decimal: ...


def liquidation_item(liquidation: ItemSource) -> dict:
    """Return one liquidation in the original OrderFox item shape (side in lower case)."""
    item: dict = {}
    for key, field, kind in ITEM_FIELDS:
        value = getattr(liquidation, field)
        if kind == "ms":
            item[key] = datetime_to_ms(value)
        elif kind == "decimal":
            item[key] = decimal_text(value)
        elif kind == "side":
            item[key] = value.lower()
        else:
            item[key] = value
    item[USD_ITEM_KEY] = decimal_text(liquidation.notional_usd)
    return item


@api_view
def liquidation_volume(request: HttpRequest, symbol: str, timeframe: str) -> HttpResponse:
    """Liquidation volume per UTC-aligned bucket of the timeframe."""
    seconds = volume.TIMEFRAMES.get(timeframe)
    if seconds is None:
        choices = ", ".join(volume.TIMEFRAMES)
        raise BadRequest(f"timeframe must be one of {choices}, got {timeframe[:10]!r}")
    start, end = time_range(request, "start_time", "end_time")
    max_range = volume.MAX_RANGE[timeframe]
    if end - start > max_range:
        raise BadRequest(
            f"range too long for {timeframe}: at most {max_range.days} day(s), "
            f"got {(end - start) / timedelta(days=1):.2f} days"
        )
    symbol_name = symbol_param(symbol, required=True)
    assert symbol_name is not None
    buckets = volume.liquidation_volume(symbol=symbol_name, seconds=seconds, start=start, end=end)
    # Up to 1,440 buckets of 11 fields: orjson keeps the encoding off the critical path.
    body = {
        "symbol": symbol_name,
        "timeframe": timeframe,
        "start_time": datetime_to_ms(start),
        "end_time": datetime_to_ms(end),
        "data": [volume_item(bucket) for bucket in buckets],
    }
    return HttpResponse(orjson.dumps(body), content_type="application/json")


def volume_item(bucket: volume.VolumeBucket) -> dict:
    return {
        "time": bucket.time,
        "timestamp_ms": bucket.time * 1000,
        "buy_volume": str(bucket.buy_volume),
        "sell_volume": str(bucket.sell_volume),
        "total_volume": str(bucket.total_volume),
        "delta_volume": str(bucket.delta_volume),
        "buy_volume_formatted": format_usd(bucket.buy_volume),
        "sell_volume_formatted": format_usd(bucket.sell_volume),
        "total_volume_formatted": format_usd(bucket.total_volume),
        "delta_volume_formatted": format_usd(bucket.delta_volume),
        "count": bucket.count,
    }


@api_view
def liquidation_orders(request: HttpRequest) -> JsonResponse:
    """The newest liquidations (all symbols, or `symbol`), newest first, as a list."""
    limit = limit_param(request, default=ORDERS_DEFAULT_LIMIT)
    symbol = symbol_param(request.GET.get("symbol"))
    items = [liquidation_item(liq) for liq in liquidation_feed(symbol=symbol)[:limit]]
    return JsonResponse(items, safe=False)

"""Reads for the symbol page's market panels: a symbol's price grid, liquidation markers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ..models import Liquidation, Symbol
from ..upstream.events import datetime_to_ms, ms_to_datetime

# The book's rounding choices, as multiples of the tick size.
ROUNDING_MULTIPLES = (1, 10, 100, 1000)
BOOK_DEPTHS = (10, 20, 50)
MAX_MARKERS = 500
# Without exchangeInfo (never fetched): a grid fine enough for any listed contract.
FALLBACK_TICK = Decimal("0.00001")


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """What the market panels need of a symbol: its price grid and precisions."""

    symbol: str
    tick_size: Decimal
    price_precision: int
    quantity_precision: int

    @property
    def roundings(self) -> list[Decimal]:
        return [(self.tick_size * m).normalize() for m in ROUNDING_MULTIPLES]


def symbol_market_spec(*, symbol: str) -> MarketSpec | None:
    """Return the symbol's tick size and precisions; None for a symbol nobody knows."""
    row = (
        Symbol.objects.filter(symbol=symbol)
        .values_list("tick_size", "price_precision", "quantity_precision")
        .first()
    )
    if row is not None:
        tick, price_places, quantity_places = row
        return MarketSpec(symbol, tick.normalize(), price_places, quantity_places)
    if Liquidation.objects.filter(symbol=symbol).exists():
        return MarketSpec(symbol, FALLBACK_TICK, 5, 3)
    return None


@dataclass(frozen=True, slots=True)
class Marker:
    time_ms: int
    side: str
    usd: Decimal
    price: Decimal


def liquidation_markers(
    *,
    symbol: str,
    start_ms: int,
    end_ms: int,
    min_usd: Decimal,
    venue: str | None = None,
    limit: int = MAX_MARKERS,
) -> list[Marker]:
    """Return the largest liquidations of at least min_usd in [start, end), oldest first."""
    queryset = Liquidation.objects.filter(
        symbol=symbol,
        trade_time__gte=ms_to_datetime(start_ms),
        trade_time__lt=ms_to_datetime(end_ms),
        notional_usd__gte=min_usd,
    )
    if venue:
        queryset = queryset.filter(venue=venue)
    rows = queryset.order_by("-notional_usd").values_list(
        "trade_time", "side", "notional_usd", "average_price"
    )[:limit]
    markers = [Marker(datetime_to_ms(t), side, usd, price) for t, side, usd, price in rows]
    return sorted(markers, key=lambda m: m.time_ms)

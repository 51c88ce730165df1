"""Reads: the live feed's rows, newest first, and the display rows built from them."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Protocol
from urllib.parse import quote

from django.db.models import Max, QuerySet
from django.utils import timezone

from ..models import SIDE_LABELS, VENUE_LABELS, Liquidation, Side, SideMixin
from .history import HistoryFilters, liquidation_page
from .symbols import SymbolInfo, symbol_info, symbol_info_map

LARGE_USD = Decimal(100_000)
HUGE_USD = Decimal(1_000_000)
ONE = Decimal(1)


@dataclass(slots=True)  # not frozen: the worker builds one per stored event (~2 µs less)
class LiquidationRow(SideMixin):
    """What the row partials show: one liquidation, formatted for its symbol.

    Everything `_row.html` shows is a string computed here once, so that partial is pure
    `{{ row.<name> }}` substitution and the worker renders it compiled (templating.py).
    """

    id: int
    venue: str
    venue_label: str  # the short name shown: Binance, Bybit, OKX
    symbol: str
    side: str
    trade_time: datetime
    quantity: str
    base_asset: str
    average_price: str
    usd: Decimal
    # Pre-formatted for _row.html (the history row formats with Django's filters).
    side_class: str  # "liq-long" or "liq-short", then " liq-large"/" liq-huge" by amount
    side_label: str
    symbol_path: str  # the symbol as a URL path segment
    usd_value: str  # the exact amount, for data-usd
    usd_display: str  # whole dollars with thousands separators (floatformat:"0g")
    trade_time_iso: str  # as Django's date:'c' shows it (ISO 8601)
    trade_time_title: str  # to the millisecond, as in "2026-01-02 03:04:05.678"
    trade_time_clock: str  # "03:04:05"

    @property
    def tier(self) -> str:
        return usd_tier(self.usd)

    @property
    def trade_time_ms(self) -> int:
        return int(self.trade_time.timestamp() * 1000)

    def __getitem__(self, name: str):
        # Django's template variables try `row[name]` before `row.name`; answering it
        # saves a raised TypeError per variable (~1 µs each, 15 per row; make bench).
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None


def usd_tier(usd: Decimal) -> str:
    """Return "huge" from $1M, "large" from $100k, else "" (rows are highlighted by it)."""
    if usd >= HUGE_USD:
        return "huge"
    if usd >= LARGE_USD:
        return "large"
    return ""


class LiquidationLike(Protocol):
    """What a display row is built from: a Liquidation, or a just-stored event."""

    # Read-only (properties), so a model instance and a NamedTuple both qualify.
    @property
    def pk(self) -> Any: ...
    @property
    def venue(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def trade_time(self) -> datetime: ...
    @property
    def filled_quantity(self) -> Decimal: ...
    @property
    def average_price(self) -> Decimal: ...
    @property
    def notional_usd(self) -> Decimal: ...


def format_decimal(value: Decimal, places: int | None) -> str:
    """Format with a fixed number of places, or without trailing zeros when unknown."""
    if places is None:
        return format(value.normalize(), ",f")
    return format(value.quantize(_quantum(places)), ",f")


def format_quantity(value: Decimal, places: int | None) -> str:
    """Format a quantity with the symbol's places, or more when it has more (never rounded).

    The places come from the symbol's listing (Binance's); another venue's quantity can be
    finer (OKX: contracts × contract value), and a shown quantity must not be rounded.
    """
    if places is not None:
        exponent = value.normalize().as_tuple().exponent
        if isinstance(exponent, int) and -exponent > places:
            places = None
    return format_decimal(value, places)


@functools.cache
def _quantum(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


SIDE_CLASSES = {Side.SELL.value: "liq-long", Side.BUY.value: "liq-short"}


def liquidation_rows(
    *, liquidations: Iterable[LiquidationLike], infos: dict[str, SymbolInfo] | None = None
) -> list[LiquidationRow]:
    """Return display rows for the given liquidations (one Symbol lookup, cached)."""
    infos = symbol_info_map() if infos is None else infos
    tz = timezone.get_current_timezone()
    symbols: dict[str, tuple[SymbolInfo, str]] = {}
    rows = []
    for liq in liquidations:
        symbol = symbols.get(liq.symbol)
        if symbol is None:
            info = symbol_info(symbol=liq.symbol, infos=infos)
            symbol = symbols[liq.symbol] = (info, quote(liq.symbol, safe=""))
        rows.append(_row(liq, *symbol, tz))
    return rows


def _row(liq: LiquidationLike, info: SymbolInfo, path: str, tz: tzinfo) -> LiquidationRow:
    usd = liq.notional_usd
    tier = usd_tier(usd)
    side_class = SIDE_CLASSES.get(liq.side, "liq-short")
    moment = liq.trade_time.astimezone(tz)  # timezone.localtime, with the zone looked up once
    iso = moment.isoformat()  # "2026-01-02T03:04:05.678000+00:00"
    clock = iso[11:19]
    return LiquidationRow(
        id=liq.pk,
        venue=liq.venue,
        venue_label=VENUE_LABELS.get(liq.venue, liq.venue),
        symbol=liq.symbol,
        side=liq.side,
        trade_time=liq.trade_time,
        quantity=format_quantity(liq.filled_quantity, info.quantity_precision),
        base_asset=info.base_asset,
        average_price=format_decimal(liq.average_price, None),
        usd=usd,
        side_class=f"{side_class} liq-{tier}" if tier else side_class,
        side_label=SIDE_LABELS.get(liq.side, liq.side),
        symbol_path=path,
        usd_value=format(usd, "f"),
        usd_display=format(usd.quantize(ONE, rounding=ROUND_HALF_UP), ",f"),
        trade_time_iso=iso,
        trade_time_title=f"{iso[:10]} {clock}.{moment.microsecond // 1000:03d}",
        trade_time_clock=clock,
    )


def liquidation_feed(
    *,
    symbol: str | None = None,
    min_usd: Decimal = Decimal(0),
    side: str | None = None,
    after_id: int | None = None,
    venue: str | None = None,
) -> QuerySet[Liquidation]:
    """Return a feed newest first: one symbol or all, filtered by amount, side and venue."""
    queryset = Liquidation.objects.order_by("-trade_time", "-id")
    if symbol:
        queryset = queryset.filter(symbol=symbol)
    if venue:
        queryset = queryset.filter(venue=venue)
    if min_usd > 0:
        queryset = queryset.filter(notional_usd__gte=min_usd)
    if side:
        queryset = queryset.filter(side=side)
    if after_id is not None:
        queryset = queryset.filter(id__gt=after_id)
    return queryset


def liquidation_newest(
    *,
    symbol: str | None = None,
    min_usd: Decimal = Decimal(0),
    side: str | None = None,
    venue: str | None = None,
    limit: int,
) -> list[Liquidation]:
    """Return a feed's newest rows (a page's first table), newest first.

    Through the history's page query: a minimum amount ("above $5M") is found through the
    size-tier indexes instead of walking the whole record by time (selectors/tiers.py).
    """
    filters = HistoryFilters(
        symbol=symbol or None, venue=venue or None, side=side or None, min_usd=min_usd or None
    )
    rows, _ = liquidation_page(filters=filters, limit=limit)
    return rows


def liquidation_last_id() -> int:
    """Return the id of the newest stored liquidation (0 when none): the feed's cursor."""
    return Liquidation.objects.aggregate(last=Max("id"))["last"] or 0


def liquidation_symbols_since(*, after_id: int, up_to_id: int, limit: int = 1000) -> list[str]:
    """Return symbols of the rows with after_id < id <= up_to_id (a primary-key range scan)."""
    return list(
        Liquidation.objects.filter(id__gt=after_id, id__lte=up_to_id)
        .order_by()
        .values_list("symbol", flat=True)
        .distinct()[:limit]
    )

"""Reads: everything views, consumers and the worker need from the database."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Protocol
from urllib.parse import quote

from django.db.models import Max, QuerySet
from django.utils import timezone

from .models import Liquidation, Side, Symbol, WorkerState

LARGE_USD = Decimal(100_000)
HUGE_USD = Decimal(1_000_000)
ONE = Decimal(1)
SYMBOL_CACHE_SECONDS = 60.0
QUOTE_SUFFIXES = ("USDT", "USDC", "BUSD", "USD")
# The worker saves its state every second; this much silence means it is not running.
WORKER_STALE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    base_asset: str
    quantity_precision: int | None
    price_precision: int | None


@dataclass(slots=True)  # not frozen: the worker builds one per stored event (~2 µs less)
class LiquidationRow:
    """What the row partials show: one liquidation, formatted for its symbol.

    Everything `_row.html` shows is a string computed here once, so that partial is pure
    `{{ row.<name> }}` substitution and the worker renders it compiled (templating.py).
    """

    id: int
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
    def is_long_liquidated(self) -> bool:
        return self.side == Side.SELL

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

    pk: int | None
    symbol: str
    side: str
    trade_time: datetime
    filled_quantity: Decimal
    average_price: Decimal
    notional_usd: Decimal


_symbol_cache: tuple[float, dict[str, SymbolInfo]] = (0.0, {})


def symbol_info_map(*, max_age: float = SYMBOL_CACHE_SECONDS) -> dict[str, SymbolInfo]:
    """Return display info of every known symbol, cached for max_age seconds."""
    global _symbol_cache
    loaded_at, infos = _symbol_cache
    if time.monotonic() - loaded_at < max_age and infos:
        return infos
    infos = {
        symbol: SymbolInfo(base, quantity_precision, price_precision)
        for symbol, base, quantity_precision, price_precision in Symbol.objects.values_list(
            "symbol", "base_asset", "quantity_precision", "price_precision"
        )
    }
    _symbol_cache = (time.monotonic(), infos)
    return infos


def symbol_info_cache_clear() -> None:
    global _symbol_cache
    _symbol_cache = (0.0, {})


def symbol_info(*, symbol: str, infos: dict[str, SymbolInfo] | None = None) -> SymbolInfo:
    """Return the symbol's display info, guessing the base asset for an unlisted symbol."""
    infos = symbol_info_map() if infos is None else infos
    known = infos.get(symbol)
    if known is not None:
        return known
    base = next((symbol[: -len(q)] for q in QUOTE_SUFFIXES if symbol.endswith(q)), symbol)
    return SymbolInfo(base_asset=base or symbol, quantity_precision=None, price_precision=None)


def format_decimal(value: Decimal, places: int | None) -> str:
    """Format with a fixed number of places, or without trailing zeros when unknown."""
    if places is None:
        return format(value.normalize(), ",f")
    return format(value.quantize(_quantum(places)), ",f")


@functools.cache
def _quantum(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


SIDE_LABELS = {side.value: side.label for side in Side}
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
        symbol=liq.symbol,
        side=liq.side,
        trade_time=liq.trade_time,
        quantity=format_decimal(liq.filled_quantity, info.quantity_precision),
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


def liquidation_list(*, symbol: str | None = None) -> QuerySet[Liquidation]:
    """Return liquidations newest first, for one symbol or all."""
    queryset = Liquidation.objects.order_by("-trade_time", "-id")
    if symbol:
        queryset = queryset.filter(symbol=symbol)
    return queryset


def liquidation_feed(
    *,
    symbol: str | None = None,
    min_usd: Decimal = Decimal(0),
    side: str | None = None,
    after_id: int | None = None,
) -> QuerySet[Liquidation]:
    """Return a dashboard feed newest first: one symbol or all, filtered by amount and side."""
    queryset = liquidation_list(symbol=symbol)
    if min_usd > 0:
        queryset = queryset.filter(notional_usd__gte=min_usd)
    if side:
        queryset = queryset.filter(side=side)
    if after_id is not None:
        queryset = queryset.filter(id__gt=after_id)
    return queryset


def liquidation_last_id() -> int:
    """Return the id of the newest stored liquidation (0 when none): the feed's cursor."""
    return Liquidation.objects.aggregate(last=Max("id"))["last"] or 0


def symbol_exists(*, symbol: str) -> bool:
    """Return whether the symbol is listed by the exchange or was ever liquidated."""
    return (
        Symbol.objects.filter(symbol=symbol).exists()
        or Liquidation.objects.filter(symbol=symbol).exists()
    )


def symbol_search(*, query: str, limit: int = 20) -> list[str]:
    """Return up to limit symbols containing query, those starting with it first.

    Searches the exchange's listing; only while that was never fetched, the symbols seen
    in liquidations (a scan the listing avoids on a large table).
    """
    query = query.strip().upper()
    symbols = Symbol.objects.values_list("symbol", flat=True)
    if not Symbol.objects.exists():
        symbols = Liquidation.objects.values_list("symbol", flat=True).distinct()
    if query:
        symbols = symbols.filter(symbol__contains=query)
    found = set(symbols.order_by()[: limit * 5])
    return sorted(found, key=lambda s: (not s.startswith(query), len(s), s))[:limit]


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """The upstream worker's state as the dashboard header shows it."""

    state: str
    last_event_at: datetime | None
    heartbeat_at: datetime | None

    @property
    def last_event_ms(self) -> int | None:
        if self.last_event_at is None:
            return None
        return int(self.last_event_at.timestamp() * 1000)

    @property
    def last_event_age(self) -> str:
        if self.last_event_at is None:
            return ""
        return age_text(seconds=(timezone.now() - self.last_event_at).total_seconds())


def age_text(*, seconds: float) -> str:
    """Return a short age: "4 s", "12 min", "3 h", "2 d"."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def worker_status(*, stale_after: float = WORKER_STALE_SECONDS) -> WorkerStatus:
    """Return the worker's state for the header; a worker silent too long counts as stopped."""
    row = worker_state()
    if row is None:
        return WorkerStatus(state="stopped", last_event_at=None, heartbeat_at=None)
    state = row["state"]
    heartbeat_at = row["heartbeat_at"]
    if heartbeat_at is None or (timezone.now() - heartbeat_at).total_seconds() > stale_after:
        state = "stopped"
    return WorkerStatus(state=state, last_event_at=row["last_event_at"], heartbeat_at=heartbeat_at)


def worker_state() -> dict | None:
    """Return the worker's last recorded state as a dict, or None if it never ran."""
    return (
        WorkerState.objects.filter(id=1)
        .values(
            "state",
            "connected_since",
            "last_event_at",
            "events_stored",
            "malformed_dropped",
            "heartbeat_at",
            "disconnected_since",
            "requested",
        )
        .first()
    )

"""Reads: the symbols the record knows, their display info, and the symbol search."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from ..models import Liquidation, Symbol

SYMBOL_CACHE_SECONDS = 60.0
QUOTE_SUFFIXES = ("USDT", "USDC", "BUSD", "USD")


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    base_asset: str
    quantity_precision: int | None
    price_precision: int | None


_symbol_cache: tuple[float, dict[str, SymbolInfo]] = (0.0, {})


def symbol_info_map(*, max_age: float = SYMBOL_CACHE_SECONDS) -> dict[str, SymbolInfo]:
    """Return display info of every known symbol, cached for max_age seconds."""
    global _symbol_cache
    loaded_at, infos = _symbol_cache
    # Empty (the worker has not listed the exchange yet): asked again a second later, not
    # a minute, nor once per row (the admin's list looks up every row's symbol).
    if time.monotonic() - loaded_at < (max_age if infos else min(max_age, 1.0)):
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
    symbols: QuerySet[Any, str] = Symbol.objects.values_list("symbol", flat=True)
    if not Symbol.objects.exists():
        symbols = Liquidation.objects.values_list("symbol", flat=True).distinct()
    if query:
        symbols = symbols.filter(symbol__contains=query)
    found = set(symbols.order_by()[: limit * 5])
    return sorted(found, key=lambda s: (not s.startswith(query), len(s), s))[:limit]

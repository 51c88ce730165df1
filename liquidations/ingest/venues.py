"""The venue adapters the settings enable, each built from its own settings."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from ..upstream.binance import BinanceVenue
from ..upstream.bybit import BybitVenue
from ..upstream.okx import OkxVenue


def venue_adapter(name: str) -> Any:
    """Return a fresh adapter of one venue (its URL and symbols from the settings now)."""
    symbols = settings.LIQUIDATION_SYMBOLS
    if name == "binance":
        return BinanceVenue(ws_base_url=settings.BINANCE_WS_BASE_URL, symbols=symbols)
    if name == "bybit":
        return BybitVenue(ws_url=settings.BYBIT_WS_URL, symbols=symbols)
    if name == "okx":
        return OkxVenue(ws_url=settings.OKX_WS_URL, symbols=symbols)
    raise ValueError(f"unknown venue {name!r}")


def enabled_venues() -> list[str]:
    return list(settings.LIQUIDATION_VENUES)

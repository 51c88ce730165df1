"""Binance's instrument listing: GET /fapi/v1/exchangeInfo into SymbolSpec rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from .events import MalformedFrame, number_field, precision_field, symbol_field, text_field
from .rest import InstrumentsError, get_json

logger = logging.getLogger(__name__)

EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo"


class ExchangeInfoError(InstrumentsError):
    """exchangeInfo could not be fetched or was not a usable listing; the message says why."""


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """One contract from /fapi/v1/exchangeInfo, as the Symbol table keeps it."""

    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    price_precision: int
    quantity_precision: int
    tick_size: Decimal
    step_size: Decimal


async def fetch_exchange_info(*, base_url: str, timeout: float = 15.0) -> list[SymbolSpec]:
    """GET {base_url}/fapi/v1/exchangeInfo and return its valid symbols."""
    url = f"{base_url.rstrip('/')}{EXCHANGE_INFO_PATH}"
    payload = await get_json(url, timeout=timeout, error=ExchangeInfoError)
    return parse_exchange_info(payload)


def parse_exchange_info(payload: object) -> list[SymbolSpec]:
    """Return the valid symbols of an exchangeInfo payload; skip (and log) invalid ones."""
    if not isinstance(payload, dict) or not isinstance(payload.get("symbols"), list):
        raise ExchangeInfoError("exchangeInfo has no 'symbols' list")
    specs: list[SymbolSpec] = []
    skipped = 0
    for entry in payload["symbols"]:
        try:
            specs.append(_symbol_spec(entry))
        except MalformedFrame as exc:
            skipped += 1
            logger.warning("Skipped exchangeInfo symbol (%s): %.200r", exc, entry)
    if not specs:
        raise ExchangeInfoError(f"exchangeInfo lists no valid symbol ({skipped} invalid)")
    return specs


def _symbol_spec(entry: object) -> SymbolSpec:
    if not isinstance(entry, dict):
        raise MalformedFrame(f"not an object: {type(entry).__name__}")
    symbol = symbol_field(entry, "symbol")
    filters = entry.get("filters")
    by_type = (
        {f.get("filterType"): f for f in filters if isinstance(f, dict)}
        if isinstance(filters, list)
        else {}
    )
    if "PRICE_FILTER" not in by_type or "LOT_SIZE" not in by_type:
        raise MalformedFrame("PRICE_FILTER or LOT_SIZE filter missing")
    return SymbolSpec(
        symbol=symbol,
        status=text_field(entry, "status", max_length=20),
        base_asset=text_field(entry, "baseAsset", max_length=20),
        quote_asset=text_field(entry, "quoteAsset", max_length=20),
        price_precision=precision_field(entry, "pricePrecision"),
        quantity_precision=precision_field(entry, "quantityPrecision"),
        tick_size=number_field(by_type["PRICE_FILTER"], "tickSize"),
        step_size=number_field(by_type["LOT_SIZE"], "stepSize"),
    )

"""Bybit's linear instrument listing: GET /v5/market/instruments-info, every page.

Linear has more contracts than one page holds: nextPageCursor is followed until it is
empty. The canonical symbol is baseCoin + quoteCoin (BTCPERP, the USDC perpetual, is
BTCUSDC), so one symbol names every venue's BTC/USDC contract.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .events import MAX_INSTRUMENT_LENGTH as INSTRUMENT_LENGTH
from .events import MalformedFrame, is_symbol, symbol_field, text_field
from .rest import InstrumentsError, get_json

logger = logging.getLogger(__name__)

INSTRUMENTS_PATH = "/v5/market/instruments-info"
PAGE_LIMIT = 1000
# Far more pages than Bybit has contracts for; ends a cursor that never runs out.
MAX_PAGES = 50
TRADING = "Trading"


@dataclass(frozen=True, slots=True)
class BybitInstrument:
    instrument: str  # Bybit's symbol: BTCUSDT, BTCPERP, BTC-26DEC25
    symbol: str  # canonical: baseCoin + quoteCoin
    status: str
    base: str
    quote: str


async def fetch_bybit_instruments(*, base_url: str, timeout: float) -> list[BybitInstrument]:
    """Return every linear instrument Bybit lists, following nextPageCursor to the end."""
    url = f"{base_url.rstrip('/')}{INSTRUMENTS_PATH}"
    instruments: list[BybitInstrument] = []
    cursor = ""
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        params = {"category": "linear", "limit": str(PAGE_LIMIT)}
        if cursor:
            params["cursor"] = cursor
        page, cursor = parse_bybit_instruments(await get_json(url, timeout=timeout, params=params))
        instruments += page
        if not cursor:
            break
        if cursor in seen:
            raise InstrumentsError(f"{url} repeated the page cursor {cursor[:40]!r}")
        seen.add(cursor)
    else:
        raise InstrumentsError(f"{url} still had pages after {MAX_PAGES}")
    if not instruments:
        raise InstrumentsError(f"{url} lists no valid linear instrument")
    return instruments


def parse_bybit_instruments(payload: object) -> tuple[list[BybitInstrument], str]:
    """Return one page's valid instruments and the next page's cursor ("" at the end)."""
    if not isinstance(payload, dict) or payload.get("retCode") != 0:
        message = payload.get("retMsg") if isinstance(payload, dict) else None
        raise InstrumentsError(f"instruments-info refused: {str(message)[:100]!r}")
    result = payload.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("list"), list):
        raise InstrumentsError("instruments-info has no result.list")
    instruments = []
    for entry in result["list"]:
        try:
            instruments.append(_instrument(entry))
        except MalformedFrame as exc:
            logger.warning("Skipped a Bybit instrument (%s): %.200r", exc, entry)
    cursor = result.get("nextPageCursor") or ""
    return instruments, cursor if isinstance(cursor, str) else ""


def _instrument(entry: object) -> BybitInstrument:
    if not isinstance(entry, dict):
        raise MalformedFrame(f"not an object: {type(entry).__name__}")
    base = text_field(entry, "baseCoin", max_length=20)
    quote = text_field(entry, "quoteCoin", max_length=10)
    symbol = base + quote
    if not is_symbol(symbol):
        raise MalformedFrame(f"invalid symbol {symbol[:40]!r}")
    return BybitInstrument(
        instrument=symbol_field(entry, "symbol", max_length=INSTRUMENT_LENGTH),
        symbol=symbol,
        status=text_field(entry, "status", max_length=20),
        base=base,
        quote=quote,
    )

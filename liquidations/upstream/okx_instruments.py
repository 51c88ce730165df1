"""OKX's perpetual swaps: GET /api/v5/public/instruments?instType=SWAP (one answer).

What a liquidation's size needs: `sz` is in contracts, worth ctVal each, of the base
coin for linear swaps (base = sz × ctVal) and of USD for inverse ones (USD = sz × ctVal,
base = USD / price). The canonical symbol is the underlying without its dash
(BTC-USDT → BTCUSDT, the inverse BTC-USD → BTCUSD).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from .events import MAX_INSTRUMENT_LENGTH, MalformedFrame, is_symbol, number_field, text_field
from .events import symbol_field as name_field
from .rest import InstrumentsError, get_json

logger = logging.getLogger(__name__)

INSTRUMENTS_PATH = "/api/v5/public/instruments"
CONTRACT_TYPES = frozenset({"linear", "inverse"})


@dataclass(frozen=True, slots=True)
class OkxInstrument:
    instrument: str  # BTC-USDT-SWAP
    symbol: str  # canonical: BTCUSDT
    inverse: bool  # sz × ctVal is USD (else base coin)
    contract_value: Decimal  # ctVal
    state: str


async def fetch_okx_instruments(*, base_url: str, timeout: float) -> list[OkxInstrument]:
    """Return every SWAP instrument OKX lists (linear and inverse)."""
    url = f"{base_url.rstrip('/')}{INSTRUMENTS_PATH}"
    payload = await get_json(url, timeout=timeout, params={"instType": "SWAP"})
    instruments = parse_okx_instruments(payload)
    if not instruments:
        raise InstrumentsError(f"{url} lists no valid swap")
    return instruments


def parse_okx_instruments(payload: object) -> list[OkxInstrument]:
    """Return the valid instruments of an answer; skip (and log) the others."""
    if not isinstance(payload, dict) or payload.get("code") != "0":
        message = payload.get("msg") if isinstance(payload, dict) else None
        raise InstrumentsError(f"instruments refused: {str(message)[:100]!r}")
    if not isinstance(payload.get("data"), list):
        raise InstrumentsError("instruments answer has no data list")
    instruments = []
    for entry in payload["data"]:
        try:
            instruments.append(_instrument(entry))
        except MalformedFrame as exc:
            logger.warning("Skipped an OKX instrument (%s): %.200r", exc, entry)
    return instruments


def _instrument(entry: object) -> OkxInstrument:
    if not isinstance(entry, dict):
        raise MalformedFrame(f"not an object: {type(entry).__name__}")
    contract_type = text_field(entry, "ctType", max_length=10)
    if contract_type not in CONTRACT_TYPES:
        raise MalformedFrame(f"unknown contract type {contract_type!r}")
    inverse = contract_type == "inverse"
    if inverse and entry.get("ctValCcy") != "USD":
        raise MalformedFrame(f"inverse contract valued in {entry.get('ctValCcy')!r}, not USD")
    underlying = text_field(entry, "uly", max_length=30) or text_field(entry, "instFamily")
    symbol = underlying.replace("-", "")
    if not is_symbol(symbol):
        raise MalformedFrame(f"invalid symbol {symbol[:40]!r}")
    value = number_field(entry, "ctVal")
    if not value:
        raise MalformedFrame("ctVal is zero")
    return OkxInstrument(
        instrument=name_field(entry, "instId", max_length=MAX_INSTRUMENT_LENGTH),
        symbol=symbol,
        inverse=inverse,
        contract_value=value,
        state=text_field(entry, "state", max_length=20),
    )

"""The common liquidation event every venue's frames become, and the parse helpers.

Venue modules (binance.py, bybit.py, okx.py) validate a frame's fields with these helpers
and build LiquidationEvents: Decimal amounts in base units, epoch-millisecond times, the
liquidation order's side (BUY = a short was liquidated), the venue and its instrument id,
and the canonical symbol (base + quote as the venue lists them).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

# Every venue this app records, as stored in Liquidation.venue (and LIQUIDATION_VENUES).
VENUES = ("binance", "bybit", "okx")
# A symbol is any name a venue lists up to this length (Binance lists 币安人生USDT):
# only control characters, whitespace and longer names are refused.
MAX_SYMBOL_LENGTH = 30
MAX_INSTRUMENT_LENGTH = 40
SIDES = frozenset({"BUY", "SELL"})
# C0 controls (NUL included), DEL and C1 controls: never in an exchange's text field, and
# PostgreSQL refuses NUL in text outright (one such event cost its whole batch).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Largest number the database columns hold (30 digits, 12 decimals).
MAX_NUMBER = Decimal(10) ** 17
ZERO = Decimal(0)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOTIONAL_QUANTUM = Decimal("0.00000001")
# Timestamps outside 2000-01-01 .. 2200-01-01 (ms) are not exchange timestamps.
MIN_TIMESTAMP_MS = 946_684_800_000
MAX_TIMESTAMP_MS = 7_258_118_400_000


class MalformedFrame(ValueError):
    """An upstream frame that is not a valid liquidation event; the message says why."""


class UnknownInstrument(MalformedFrame):
    """A frame of an instrument the venue's listing did not have when it was parsed."""


class PartlyMalformed(MalformedFrame):
    """A frame carrying several events, some of them malformed: the others are kept.

    `events` are the valid ones, `count` the malformed ones, the message says why.
    """

    def __init__(self, message: str, *, events: list[LiquidationEvent], count: int) -> None:
        super().__init__(message)
        self.events = events
        self.count = count


@dataclass(frozen=True, slots=True)
class LiquidationEvent:
    """One liquidation in the common form; fields a venue does not publish are ""/None."""

    venue: str
    instrument: str  # the venue's own id: BTCUSDT, BTCPERP, BTC-USDT-SWAP
    symbol: str  # canonical base + quote: BTCUSDT on every venue
    side: str
    order_type: str
    time_in_force: str
    original_quantity: Decimal
    price: Decimal
    average_price: Decimal
    order_status: str
    last_filled_quantity: Decimal | None
    filled_quantity: Decimal
    trade_time_ms: int
    event_time_ms: int | None
    # The USD amount when the venue states it (OKX inverse contracts: sz × ctVal).
    usd: Decimal | None = None

    @property
    def notional_usd(self) -> Decimal:
        """Return the stated USD, else z × ap, or q × p when there is no average price."""
        if self.usd is not None:
            amount = self.usd
        elif self.average_price:
            amount = self.filled_quantity * self.average_price
        else:
            amount = self.original_quantity * self.price
        return amount.quantize(NOTIONAL_QUANTUM)

    @property
    def trade_time(self) -> datetime:
        return ms_to_datetime(self.trade_time_ms)

    @property
    def event_time(self) -> datetime | None:
        return None if self.event_time_ms is None else ms_to_datetime(self.event_time_ms)

    @property
    def dedup_key(self) -> tuple[str, str, str, int, Decimal, Decimal]:
        # Decimals compare and hash by value: 0.0100 and 0.01 are one key, as in the table.
        return (
            self.venue,
            self.symbol,
            self.side,
            self.trade_time_ms,
            self.filled_quantity,
            self.average_price,
        )


def ms_to_datetime(ms: int) -> datetime:
    """Return an aware UTC datetime keeping millisecond precision."""
    return EPOCH + timedelta(milliseconds=ms)  # exact, and half the cost of fromtimestamp


def datetime_to_ms(value: datetime) -> int:
    """Return epoch milliseconds of an aware datetime (exact, no float rounding)."""
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def is_symbol(value: str) -> bool:
    """Return whether value can be a symbol: 1-30 characters, no whitespace or control ones."""
    return 0 < len(value) <= MAX_SYMBOL_LENGTH and is_printable_name(value)


def is_printable_name(value: str) -> bool:
    """Return whether value has no whitespace, control, format or unassigned characters."""
    if value.isascii():  # the usual case, without a lookup per character
        return value.isprintable() and " " not in value
    return not any(c.isspace() or unicodedata.category(c)[0] in "CZ" for c in value)


def symbol_normalize(value: str) -> str | None:
    """Return the symbol in upper case, or None if it cannot be a symbol."""
    symbol = value.strip().upper()
    return symbol if is_symbol(symbol) else None


def symbol_field(obj: dict, key: str, *, max_length: int = MAX_SYMBOL_LENGTH) -> str:
    """Return a symbol (or, with a longer max_length, instrument id) or raise MalformedFrame."""
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedFrame(f"field {key!r} missing or not a string")
    if not (0 < len(value) <= max_length and is_printable_name(value)):
        raise MalformedFrame(f"invalid symbol {value[:40]!r}")
    return value


def text_field(obj: dict, key: str, *, max_length: int = 30) -> str:
    """Return a short text field or raise MalformedFrame (missing, too long, control chars)."""
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedFrame(f"field {key!r} missing or not a string")
    if len(value) > max_length:
        raise MalformedFrame(f"field {key!r} longer than {max_length} characters")
    if CONTROL_CHARACTERS.search(value):
        raise MalformedFrame(f"field {key!r} contains a control character")
    return value


def number_field(obj: dict, key: str) -> Decimal:
    value = obj.get(key)
    if type(value) is str:
        # The usual case, checked at once: half the cost of the checks below, which
        # explain what is wrong with anything this does not accept.
        number = _decimal_in_range(value)
        if number is not None:
            return number
    # Binance sends decimals as strings; a bare number would lose precision in JSON.
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise MalformedFrame(f"field {key!r} missing or not a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise MalformedFrame(f"field {key!r} is not numeric: {str(value)[:30]!r}") from None
    if not number.is_finite():
        raise MalformedFrame(f"field {key!r} is not finite: {value!r}")
    if number < 0:
        raise MalformedFrame(f"field {key!r} is negative: {value!r}")
    if number >= MAX_NUMBER:
        raise MalformedFrame(f"field {key!r} is out of range: {str(value)[:30]!r}")
    return number


def _decimal_in_range(text: str) -> Decimal | None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() and ZERO <= number < MAX_NUMBER else None


def millis_field(obj: dict, key: str, *, as_text: bool = False) -> int:
    """Return epoch milliseconds (an integer, or with as_text its decimal string: OKX)."""
    value = obj.get(key)
    if as_text and isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedFrame(f"field {key!r} missing or not an integer timestamp")
    if not MIN_TIMESTAMP_MS <= value < MAX_TIMESTAMP_MS:
        raise MalformedFrame(f"field {key!r} timestamp out of range: {value}")
    return value


def precision_field(obj: dict, key: str) -> int:
    """Return a number of decimal places (0-18) or raise MalformedFrame."""
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 18:
        raise MalformedFrame(f"field {key!r} is not a precision: {value!r}")
    return value

"""A viewer's feed filter: minimum amount, side and venue, from a query or a socket message."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from ..models import Side, Venue

MIN_USD_PRESETS = (0, 1_000, 10_000, 100_000, 1_000_000)
# Far above any single liquidation; keeps the value a plain, bounded number.
MAX_MIN_USD = Decimal(10) ** 12
AMOUNT_RE = re.compile(r"^\d{1,13}(\.\d{1,2})?$")
# Query-string and message value -> Binance order side ("" = both).
SIDES = {"": "", "all": "", "long": Side.SELL.value, "short": Side.BUY.value}
SIDE_CHOICES = (("", "All"), ("long", "Longs"), ("short", "Shorts"))
VENUE_CHOICES: tuple[tuple[str, str], ...] = (("", "All"),) + tuple(
    (venue.value, str(venue.label)) for venue in Venue
)
VENUE_NAMES = ", ".join(("all", *(venue.value for venue in Venue)))


class InvalidFilter(ValueError):
    """A filter value that is not acceptable; the message says why."""


def parse_min_usd(value: object) -> Decimal:
    """Return a minimum amount from a string or JSON number, or raise InvalidFilter."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidFilter("min_usd must be a number")
    text = str(value).strip().replace(",", "")
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    if text == "":
        return Decimal(0)
    if not AMOUNT_RE.match(text):
        raise InvalidFilter(f"min_usd must be a plain amount up to {MAX_MIN_USD:,}")
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:  # pragma: no cover - the pattern already refuses it
        raise InvalidFilter("min_usd must be a number") from exc
    if amount > MAX_MIN_USD:
        raise InvalidFilter(f"min_usd must be at most {MAX_MIN_USD:,}")
    return amount


def parse_side(value: object) -> str:
    """Return "", "long" or "short", or raise InvalidFilter."""
    if not isinstance(value, str) or value.strip().lower() not in SIDES:
        raise InvalidFilter("side must be one of: all, long, short")
    side = value.strip().lower()
    return "" if side == "all" else side


def parse_venue(value: object) -> str:
    """Return "" (every venue) or a venue's name, or raise InvalidFilter."""
    venue = value.strip().lower() if isinstance(value, str) else None
    if venue in ("", "all"):
        return ""
    if venue not in Venue.values:
        raise InvalidFilter(f"venue must be one of: {VENUE_NAMES}")
    return venue


@dataclass(frozen=True, slots=True)
class FeedFilter:
    min_usd: Decimal = Decimal(0)
    side: str = ""  # "", "long" or "short"
    venue: str = ""  # "" (every venue), "binance", "bybit" or "okx"
    errors: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_query(cls, params) -> FeedFilter:
        """Read min_usd, side and venue from a query string; ignore bad values and say why."""
        errors = []
        min_usd = Decimal(0)
        side = venue = ""
        try:
            min_usd = parse_min_usd(params.get("min_usd", ""))
        except InvalidFilter as exc:
            errors.append(f"Ignored the minimum amount: {exc}.")
        try:
            side = parse_side(params.get("side", ""))
        except InvalidFilter as exc:
            errors.append(f"Ignored the side: {exc}.")
        try:
            venue = parse_venue(params.get("venue", ""))
        except InvalidFilter as exc:
            errors.append(f"Ignored the venue: {exc}.")
        return cls(min_usd=min_usd, side=side, venue=venue, errors=tuple(errors))

    @property
    def is_default(self) -> bool:
        return not (self.min_usd or self.side or self.venue)

    @property
    def binance_side(self) -> str:
        return SIDES[self.side]

    @property
    def min_usd_value(self) -> str:
        """The amount as the query string and the socket message carry it."""
        return format(self.min_usd.normalize(), "f") if self.min_usd else "0"

    @property
    def is_preset(self) -> bool:
        return self.min_usd in MIN_USD_PRESETS

    def matches(self, *, usd: float, side: str, venue: str = "") -> bool:
        """Return whether a broadcast row passes this filter."""
        if self.side and side != self.binance_side:
            return False
        if self.venue and venue != self.venue:
            return False
        return usd >= self.min_usd_float

    @property
    def min_usd_float(self) -> float:
        return float(self.min_usd)

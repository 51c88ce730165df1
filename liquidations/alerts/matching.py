"""Which stored liquidations trigger a rule: pure functions, hand-checkable (no database).

A plain rule triggers on every matching row (venue, symbols, side, minimum USD), except
within its cooldown after the previous trigger. A cascade rule triggers when the matching
rows within its window sum to its cascade amount; the rows of a fired window are not
counted again. Rows are taken in storage (id) order; times are trade times, in ms.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from ..upstream.orderfox_api import decimal_text

# A cascade message lists at most this many of its window's rows (the largest).
MAX_CASCADE_ITEMS = 100


class RowLike(Protocol):
    """A stored liquidation as matching reads it (a Liquidation qualifies)."""

    @property
    def pk(self) -> Any: ...
    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> str: ...
    @property
    def filled_quantity(self) -> Decimal: ...
    @property
    def average_price(self) -> Decimal: ...
    @property
    def notional_usd(self) -> Decimal: ...
    @property
    def trade_time(self) -> datetime: ...


def row_venue(row: Any) -> str:
    """The venue of a stored row (binance, bybit or okx)."""
    return str(row.venue)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """What matching needs of an AlertRule."""

    id: int
    venues: frozenset[str] = frozenset()  # empty: all
    symbols: frozenset[str] = frozenset()  # empty: all
    side: str = ""  # "" both, else BUY or SELL (the order side)
    min_usd: Decimal = Decimal(0)
    cascade_seconds: int | None = None
    cascade_usd: Decimal | None = None
    cooldown_seconds: int = 0
    start_after_id: int = 0

    @property
    def is_cascade(self) -> bool:
        return bool(self.cascade_seconds and self.cascade_usd)


@dataclass(slots=True)
class RuleProgress:
    """What matching remembers of a rule between rounds (kept on AlertRule)."""

    fired_ms: int | None = None  # trade time of the last trigger (cooldown)
    window_after_id: int = 0  # cascade: rows up to this id were in a fired window


@dataclass(frozen=True, slots=True)
class Hit:
    """One trigger: key "liq:<id>" or "cascade:<id of the row that completed it>"."""

    key: str
    time_ms: int
    items: list[dict[str, str | int]]
    summary: dict[str, str | int] | None = None


@dataclass(slots=True)
class _Window:
    rows: list[RowLike] = field(default_factory=list)


def split_list(text: str, *, upper: bool = False) -> frozenset[str]:
    """A comma-separated list as a set ("" -> empty: all)."""
    items = (item.strip() for item in text.split(","))
    return frozenset(item.upper() if upper else item.lower() for item in items if item)


def time_ms(row: RowLike) -> int:
    return int(row.trade_time.timestamp() * 1000)


def item_of(row: RowLike) -> dict[str, str | int]:
    """One liquidation as the webhook payload lists it (side: the order side, as stored)."""
    return {
        "id": int(row.pk),
        "venue": row_venue(row),
        "symbol": row.symbol,
        "side": row.side,
        "quantity": decimal_text(row.filled_quantity),
        "price": decimal_text(row.average_price),
        "usd": decimal_text(row.notional_usd),
        "time_ms": time_ms(row),
    }


def rule_accepts(spec: RuleSpec, row: RowLike) -> bool:
    """Whether a row passes the rule's filters (not its start, cooldown or cascade)."""
    if spec.venues and row_venue(row) not in spec.venues:
        return False
    if spec.symbols and row.symbol not in spec.symbols:
        return False
    if spec.side and row.side != spec.side:
        return False
    return row.notional_usd >= spec.min_usd


def _cooling(spec: RuleSpec, progress: RuleProgress, at_ms: int) -> bool:
    if not spec.cooldown_seconds or progress.fired_ms is None:
        return False
    return at_ms < progress.fired_ms + spec.cooldown_seconds * 1000


def rule_hits(
    spec: RuleSpec,
    progress: RuleProgress,
    rows: Iterable[RowLike],
    *,
    window: Sequence[RowLike] = (),
) -> list[Hit]:
    """Return the triggers of new rows (id order), updating progress in place.

    window: for a cascade rule, the matching rows stored before these (ids above
    progress.window_after_id) whose trade times may still count.
    """
    if spec.is_cascade:
        return _cascade_hits(spec, progress, rows, window)
    hits = []
    for row in rows:
        if row.pk <= spec.start_after_id or not rule_accepts(spec, row):
            continue
        at = time_ms(row)
        if _cooling(spec, progress, at):
            continue
        progress.fired_ms = at
        hits.append(Hit(key=f"liq:{row.pk}", time_ms=at, items=[item_of(row)]))
    return hits


def _cascade_hits(
    spec: RuleSpec, progress: RuleProgress, rows: Iterable[RowLike], window: Sequence[RowLike]
) -> list[Hit]:
    assert spec.cascade_seconds and spec.cascade_usd
    span_ms = spec.cascade_seconds * 1000
    after = max(spec.start_after_id, progress.window_after_id)
    # Rows its cooldown skipped never count, as they would not have in their own round.
    current = _Window(
        rows=[r for r in window if r.pk > after and not _cooling(spec, progress, time_ms(r))]
    )
    hits = []
    for row in rows:
        if row.pk <= after or not rule_accepts(spec, row):
            continue
        at = time_ms(row)
        if _cooling(spec, progress, at):
            continue
        current.rows = [r for r in current.rows if time_ms(r) > at - span_ms] + [row]
        total = sum((r.notional_usd for r in current.rows), Decimal(0))
        if total < spec.cascade_usd:
            continue
        hits.append(_cascade_hit(spec, current.rows, total, row))
        progress.fired_ms = at
        progress.window_after_id = after = int(row.pk)
        current.rows = []
    return hits


def _cascade_hit(spec: RuleSpec, rows: list[RowLike], total: Decimal, last: RowLike) -> Hit:
    largest = sorted(rows, key=lambda r: r.notional_usd, reverse=True)[:MAX_CASCADE_ITEMS]
    largest.sort(key=lambda r: r.pk)
    summary: dict[str, str | int] = {
        "seconds": int(spec.cascade_seconds or 0),
        "count": len(rows),
        "usd": decimal_text(total),
    }
    return Hit(
        key=f"cascade:{last.pk}",
        time_ms=time_ms(last),
        items=[item_of(r) for r in largest],
        summary=summary,
    )

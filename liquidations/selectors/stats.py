"""Reads: the stats strip (long/short USD, count and largest per 1h/4h/12h/24h window),
with each window's long and short totals split per venue."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Aggregate, Count, Max, Q, QuerySet, Sum
from django.utils import timezone

from ..models import (
    VENUE_LABELS,
    Liquidation,
    LiquidationMinute,
    RollupState,
    Side,
    SideMixin,
    Venue,
)
from ..upstream.events import datetime_to_ms, ms_to_datetime
from .volume import usd_cents

STATS_WINDOWS: tuple[tuple[str, int], ...] = (
    ("1h", 3600),
    ("4h", 4 * 3600),
    ("12h", 12 * 3600),
    ("24h", 24 * 3600),
)
# Rows whose notional equals some window maximum, newest first, that stats look at.
LARGEST_CANDIDATES = 500


@dataclass(frozen=True, slots=True)
class Largest(SideMixin):
    symbol: str
    usd: Decimal
    trade_time: datetime
    side: str


@dataclass(frozen=True, slots=True)
class VenueSplit:
    """One venue's share of a window: long and short totals (Coinglass's exchange list)."""

    venue: str
    long_usd: Decimal
    short_usd: Decimal

    @property
    def label(self) -> str:
        return VENUE_LABELS.get(self.venue, self.venue)

    @property
    def total_usd(self) -> Decimal:
        return self.long_usd + self.short_usd


VENUE_ORDER = {venue.value: n for n, venue in enumerate(Venue)}
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class WindowStats:
    label: str
    seconds: int
    long_usd: Decimal  # SELL orders: long positions liquidated
    short_usd: Decimal  # BUY orders: short positions liquidated
    count: int
    largest: Largest | None
    venues: tuple[VenueSplit, ...] = ()

    @property
    def total_usd(self) -> Decimal:
        return self.long_usd + self.short_usd


def liquidation_stats(*, symbol: str | None = None, now: datetime) -> list[WindowStats]:
    """Return long/short USD, count and the largest liquidation for each stats window."""
    return liquidation_stats_many(scopes=[symbol], now=now)[symbol]


def liquidation_stats_many(
    *, scopes: Sequence[str | None], now: datetime
) -> dict[str | None, list[WindowStats]]:
    """Return the stats windows of several scopes (None: all-market) in three queries.

    Three small queries whatever the size of the record and the number of scopes: the
    per-minute rollup for the whole minutes of every window (rows up to the rollup's
    watermark), the raw rows the rollup does not cover (each window's partial first
    minute, and rows newer than the watermark: a second's worth while the publisher
    runs) grouped by symbol, then the rows holding each window's maximum (the notional
    index). Exact at millisecond level: the rollup only ever answers for whole minutes
    inside a window. Building a query with sixteen filtered aggregates costs more Python
    than the database spends answering it, so the live publisher asks for all its
    scopes at once rather than once per scope.
    """
    scopes = list(dict.fromkeys(scopes))
    windows = []
    for label, seconds in STATS_WINDOWS:
        since = now - timedelta(seconds=seconds)
        first_whole = -(-datetime_to_ms(since) // 60_000) * 60  # epoch s, minute ceiling
        windows.append((label, since, first_whole, ms_to_datetime(first_whole * 1000)))
    oldest = min(w[1] for w in windows)
    state = RollupState.objects.filter(id=1).values("last_id", "minutes_from").first()
    covered = bool(state and state["minutes_from"] and oldest >= state["minutes_from"])
    # Not covered (a `now` older than the rollup keeps): every row counts as uncovered.
    watermark = state["last_id"] if state and covered else 0

    rolled = _stats_rolled(scopes=scopes, windows=windows) if covered else {}
    base = Liquidation.objects.filter(trade_time__gte=oldest)
    if None not in scopes:
        base = base.filter(symbol__in=scopes)
    raw = _stats_raw(base=base, windows=windows, watermark=watermark)

    parts = {scope: _scope_parts(scope, rolled, raw) for scope in scopes}
    totals = {scope: _stats_totals(parts[scope]) for scope in scopes}
    largest = _largest_rows(base=base, totals=totals, now=now)
    return {
        scope: [
            WindowStats(
                label=label,
                seconds=seconds,
                long_usd=usd_cents(totals[scope][f"long_{label}"]),
                short_usd=usd_cents(totals[scope][f"short_{label}"]),
                count=int(totals[scope][f"count_{label}"]),
                largest=largest.get((scope, label)),
                venues=_venue_splits(parts[scope], label),
            )
            for label, seconds in STATS_WINDOWS
        ]
        for scope in scopes
    }


Parts = dict[str, dict[str, dict]]  # scope or symbol → venue → aggregates


def _stats_rolled(*, scopes: list[str | None], windows: list) -> Parts:
    """Return rollup scope ("" for all-market) → venue → whole-minute aggregates per window."""
    aggregates: dict[str, Aggregate] = {}
    for label, _, first_whole, _ in windows:
        whole = Q(start__gte=first_whole)
        aggregates[f"long_{label}"] = Sum("usd", filter=whole & Q(side=Side.SELL))
        aggregates[f"short_{label}"] = Sum("usd", filter=whole & Q(side=Side.BUY))
        aggregates[f"count_{label}"] = Sum("count", filter=whole)
        aggregates[f"max_{label}"] = Max("max_usd", filter=whole)
    rows = (
        LiquidationMinute.objects.filter(
            scope__in=[scope or "" for scope in scopes], start__gte=min(w[2] for w in windows)
        )
        .values("scope", "venue")
        .annotate(**aggregates)
        .order_by()
    )
    rolled: Parts = defaultdict(dict)
    for row in rows:
        values: dict[str, Any] = dict(row)
        rolled[values.pop("scope")][values.pop("venue")] = values
    return rolled


def _stats_raw(*, base: QuerySet[Liquidation], windows: list, watermark: int) -> Parts:
    """Return symbol → venue → aggregates per window over rows the rollup does not cover."""
    newer = Q(id__gt=watermark)
    uncovered = newer
    aggregates: dict[str, Aggregate] = {}
    for label, since, _, whole_from in windows:
        edge = Q(trade_time__gte=since, trade_time__lt=whole_from)
        uncovered |= edge
        mine = Q(trade_time__gte=since) & (edge | newer)
        aggregates[f"long_{label}"] = Sum("notional_usd", filter=mine & Q(side=Side.SELL))
        aggregates[f"short_{label}"] = Sum("notional_usd", filter=mine & Q(side=Side.BUY))
        aggregates[f"count_{label}"] = Count("trade_time", filter=mine)
        aggregates[f"max_{label}"] = Max("notional_usd", filter=mine)
    rows = base.filter(uncovered).values("symbol", "venue").annotate(**aggregates).order_by()
    raw: Parts = defaultdict(dict)
    for row in rows:
        values: dict[str, Any] = dict(row)
        raw[values.pop("symbol")][values.pop("venue")] = values
    return raw


def _scope_parts(scope: str | None, rolled: Parts, raw: Parts) -> dict[str, list[dict]]:
    """Return venue → the aggregates that add up to one scope (all-market: every symbol's)."""
    parts: dict[str, list[dict]] = defaultdict(list)
    for venue, row in rolled.get(scope or "", {}).items():
        parts[venue].append(row)
    for by_venue in raw.values() if scope is None else [raw.get(scope, {})]:
        for venue, row in by_venue.items():
            parts[venue].append(row)
    return parts


def _venue_splits(parts: dict[str, list[dict]], label: str) -> tuple[VenueSplit, ...]:
    splits = [
        VenueSplit(
            venue=venue,
            long_usd=usd_cents(sum((row[f"long_{label}"] or ZERO for row in rows), ZERO)),
            short_usd=usd_cents(sum((row[f"short_{label}"] or ZERO for row in rows), ZERO)),
        )
        for venue, rows in parts.items()
    ]
    return tuple(sorted(splits, key=lambda split: VENUE_ORDER.get(split.venue, 99)))


def _stats_totals(by_venue: dict[str, list[dict]]) -> dict:
    """Add up one scope's rollup and raw aggregates over every venue."""
    parts = [row for rows in by_venue.values() for row in rows]
    totals: dict[str, object] = {}
    for label, _ in STATS_WINDOWS:
        for kind in ("long", "short", "count"):
            key = f"{kind}_{label}"
            totals[key] = sum(part[key] or 0 for part in parts if part)
        values = [
            part[f"max_{label}"] for part in parts if part and part[f"max_{label}"] is not None
        ]
        totals[f"max_{label}"] = max(values) if values else None
    return totals


def _largest_rows(
    *, base: QuerySet[Liquidation], totals: dict[str | None, dict], now: datetime
) -> dict[tuple[str | None, str], Largest]:
    """Return (scope, window label) → the liquidation holding that window's maximum."""
    maxima = {
        total[f"max_{label}"]
        for total in totals.values()
        for label, _ in STATS_WINDOWS
        if total[f"max_{label}"] is not None
    }
    if not maxima:
        return {}
    candidates = list(
        base.filter(notional_usd__in=maxima)
        .order_by("-trade_time")
        .values_list("symbol", "notional_usd", "trade_time", "side")[:LARGEST_CANDIDATES]
    )
    largest: dict[tuple[str | None, str], Largest] = {}
    for scope, total in totals.items():
        mine = [row for row in candidates if scope is None or row[0] == scope]
        for label, seconds in STATS_WINDOWS:
            maximum = total[f"max_{label}"]
            if maximum is None:
                continue
            since = now - timedelta(seconds=seconds)
            in_window = [row for row in mine if row[2] >= since and row[1] == maximum]
            if not in_window:
                # Not among the newest candidates (a crash day holds thousands of maxima),
                # or the equality lookup missed (SQLite compares decimals as floats): ask.
                scoped = base if scope is None else base.filter(symbol=scope)
                in_window = list(
                    scoped.filter(trade_time__gte=since)
                    .order_by("-notional_usd", "-trade_time")
                    .values_list("symbol", "notional_usd", "trade_time", "side")[:1]
                )
            if in_window:
                symbol, usd, trade_time, side = max(in_window, key=lambda row: (row[1], row[2]))
                largest[(scope, label)] = Largest(
                    symbol=symbol, usd=usd, trade_time=trade_time, side=side
                )
    return largest


def stats_context(*, symbol: str | None = None, stats: list[WindowStats] | None = None) -> dict:
    """Return the context `_stats.html` renders: the windows of one scope."""
    if stats is None:
        stats = liquidation_stats(symbol=symbol, now=timezone.now())
    return {"stats": stats, "scope": symbol}


# A page's strip is reused by this process for up to PAGE_STATS_SECONDS: the socket
# replaces it every second anyway, and a rush of page loads on a crash day then costs
# one computation per scope per second instead of one per load (~10 ms on 5 M rows).
PAGE_STATS_SECONDS = 1.0
MAX_PAGE_STATS_SCOPES = 1000
_page_stats: dict[str | None, tuple[float, list[WindowStats]]] = {}


def page_stats_context(*, symbol: str | None = None) -> dict:
    """Return stats_context for a page: computed at most once a second per scope."""
    now = time.monotonic()
    recent = _page_stats.get(symbol)
    if recent is not None and now - recent[0] < PAGE_STATS_SECONDS:
        return stats_context(symbol=symbol, stats=recent[1])
    context = stats_context(symbol=symbol)
    if len(_page_stats) >= MAX_PAGE_STATS_SCOPES:
        _page_stats.clear()  # bounded: one entry per scope asked for lately
    _page_stats[symbol] = (now, context["stats"])
    return context


def page_stats_clear() -> None:
    _page_stats.clear()

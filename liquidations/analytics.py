"""Reads for analytics (selectors, like selectors.py): volume buckets, stats, history, API.

Everything here aggregates in the database; Python only shapes the few result rows.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import NotSupportedError, connection
from django.db.models import (
    BigIntegerField,
    Count,
    ExpressionWrapper,
    F,
    Func,
    Max,
    Q,
    QuerySet,
    Sum,
)

from .binance import SYMBOL_RE, ms_to_datetime
from .models import (
    Liquidation,
    LiquidationHour,
    LiquidationMinute,
    RollupState,
    Side,
    Symbol,
)
from .selectors import worker_state

# Timeframe → bucket length in seconds, and the longest range one request may ask for.
TIMEFRAMES: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 14_400,
    "1d": 86_400,
}
MAX_RANGE: dict[str, timedelta] = {
    "1m": timedelta(days=1),
    "5m": timedelta(days=3),
    "15m": timedelta(days=7),
    "30m": timedelta(days=14),
    "1h": timedelta(days=30),
    "4h": timedelta(days=90),
    "1d": timedelta(days=365),
}
STATS_WINDOWS: tuple[tuple[str, int], ...] = (
    ("1h", 3600),
    ("4h", 4 * 3600),
    ("12h", 12 * 3600),
    ("24h", 24 * 3600),
)
CENT = Decimal("0.01")
# Rows whose notional equals some window maximum, newest first, that stats look at.
LARGEST_CANDIDATES = 500


def epoch_bucket_sql(vendor: str, column_sql: str, seconds: int) -> str:
    """Return SQL for the epoch seconds of the UTC bucket start holding a datetime column.

    For a cursor with parameters: SQLite's strftime('%s') is written '%%s'.
    """
    n = int(seconds)
    if vendor == "sqlite":
        # Django keeps SQLite datetimes as UTC text; '%s' is seconds since the epoch.
        return f"((CAST(strftime('%%s', {column_sql}) AS INTEGER) / {n}) * {n})"
    if vendor == "postgresql":
        return f"(CAST(FLOOR(EXTRACT(EPOCH FROM {column_sql}) / {n}) AS BIGINT) * {n})"
    raise NotSupportedError(f"epoch buckets are not implemented for {vendor}")


class EpochBucket(Func):
    """Epoch seconds of the start of the UTC bucket (`seconds` long) holding a datetime.

    Bucketing by epoch arithmetic rather than a stored `trade_time_ms` column keeps one
    source of truth for the time and needs no change to the ingest path; each backend
    gets its own expression (Django stores SQLite datetimes as UTC text, PostgreSQL as
    timestamptz). Both give whole seconds, so every bucket starts on an exact multiple of
    its length since 1970-01-01 UTC: 1d buckets start at 00:00 UTC, 4h at 00/04/08...
    """

    output_field = BigIntegerField()

    def __init__(self, expression, *, seconds: int) -> None:
        if not isinstance(seconds, int) or seconds <= 0:
            raise ValueError(f"bucket length must be a positive int, not {seconds!r}")
        super().__init__(expression)
        self.seconds = seconds

    def as_sql(self, compiler, connection, **extra_context):
        (expression,) = self.get_source_expressions()
        sql, params = compiler.compile(expression)
        return epoch_bucket_sql(connection.vendor, sql, self.seconds), params


@dataclass(frozen=True, slots=True)
class VolumeBucket:
    time: int  # bucket start, epoch seconds (UTC)
    buy_volume: Decimal  # shorts liquidated (BUY orders)
    sell_volume: Decimal  # longs liquidated (SELL orders)
    count: int

    @property
    def total_volume(self) -> Decimal:
        return self.buy_volume + self.sell_volume

    @property
    def delta_volume(self) -> Decimal:
        return self.buy_volume - self.sell_volume


def symbol_normalize(value: str) -> str | None:
    """Return the symbol in upper case, or None if it cannot be a symbol."""
    symbol = value.strip().upper()
    return symbol if SYMBOL_RE.fullmatch(symbol) else None


def symbol_known(*, symbol: str) -> bool:
    """Return whether the symbol is listed by the exchange or was ever recorded."""
    return (
        Symbol.objects.filter(symbol=symbol).exists()
        or Liquidation.objects.filter(symbol=symbol).exists()
    )


def liquidation_volume(
    *, symbol: str, seconds: int, start: datetime, end: datetime
) -> list[VolumeBucket]:
    """Return non-empty buckets of [start, end) for the symbol, oldest first.

    Grouped in the database: the whole rollup buckets inside the range (hours for 1h
    and longer, minutes below) are summed from the rollup, which holds a few thousand
    rows whatever the liquidation count; the rest (partial edge buckets, rows newer
    than the rollup's watermark, or a range older than a rollup keeps) comes from one
    grouped query over the liquidations.
    """
    buckets: dict[int, list] = {}
    raw = Liquidation.objects.filter(symbol=symbol, trade_time__gte=start, trade_time__lt=end)
    rollup = _volume_rollup(seconds=seconds, start=start)
    if rollup is not None:
        model, step, last_id = rollup
        first_whole = -(-datetime_to_ms(start) // (step * 1000)) * step
        end_whole = datetime_to_ms(end) // (step * 1000) * step
        if first_whole < end_whole:
            rolled = (
                model.objects.filter(scope=symbol, start__gte=first_whole, start__lt=end_whole)
                .values(
                    bucket=ExpressionWrapper(
                        F("start") / seconds * seconds, output_field=BigIntegerField()
                    )
                )
                .annotate(
                    buy=Sum("usd", filter=Q(side=Side.BUY)),
                    sell=Sum("usd", filter=Q(side=Side.SELL)),
                    count=Sum("count"),
                )
                .order_by()
            )
            _add_buckets(buckets, rolled)
            raw = raw.filter(
                Q(trade_time__lt=ms_to_datetime(first_whole * 1000))
                | Q(trade_time__gte=ms_to_datetime(end_whole * 1000))
                | Q(id__gt=last_id)
            )
    grouped = (
        raw.values(bucket=EpochBucket("trade_time", seconds=seconds))
        .annotate(
            buy=Sum("notional_usd", filter=Q(side=Side.BUY)),
            sell=Sum("notional_usd", filter=Q(side=Side.SELL)),
            # trade_time, not id: the covering index holds it, so no heap visit.
            count=Count("trade_time"),
        )
        .order_by()
    )
    _add_buckets(buckets, grouped)
    return [
        VolumeBucket(time=time, buy_volume=_usd(buy), sell_volume=_usd(sell), count=count)
        for time, (buy, sell, count) in sorted(buckets.items())
    ]


def _volume_rollup(*, seconds: int, start: datetime):
    """Return (rollup model, its bucket seconds, watermark) that can serve, or None."""
    state = RollupState.objects.filter(id=1).values("last_id", "minutes_from", "hours_from").first()
    if state is None:
        return None
    if seconds % 3600 == 0 and state["hours_from"] and start >= state["hours_from"]:
        return LiquidationHour, 3600, state["last_id"]
    if seconds % 60 == 0 and state["minutes_from"] and start >= state["minutes_from"]:
        return LiquidationMinute, 60, state["last_id"]
    return None


def _add_buckets(buckets: dict[int, list], rows) -> None:
    for row in rows:
        total = buckets.setdefault(int(row["bucket"]), [Decimal(0), Decimal(0), 0])
        total[0] += row["buy"] or 0
        total[1] += row["sell"] or 0
        total[2] += int(row["count"])


def _usd(value: Decimal | None) -> Decimal:
    # Cents: SQLite sums decimals as floats; cents keep both backends equal and honest.
    return (value or Decimal(0)).quantize(CENT)


@dataclass(frozen=True, slots=True)
class Largest:
    symbol: str
    usd: Decimal
    trade_time: datetime
    side: str

    @property
    def is_long_liquidated(self) -> bool:
        return self.side == Side.SELL


@dataclass(frozen=True, slots=True)
class WindowStats:
    label: str
    seconds: int
    long_usd: Decimal  # SELL orders: long positions liquidated
    short_usd: Decimal  # BUY orders: short positions liquidated
    count: int
    largest: Largest | None

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
    covered = state and state["minutes_from"] and oldest >= state["minutes_from"]
    # Not covered (a `now` older than the rollup keeps): every row counts as uncovered.
    watermark = state["last_id"] if covered else 0

    rolled = _stats_rolled(scopes=scopes, windows=windows) if covered else {}
    base = Liquidation.objects.filter(trade_time__gte=oldest)
    if None not in scopes:
        base = base.filter(symbol__in=scopes)
    raw = _stats_raw(base=base, windows=windows, watermark=watermark)

    totals = {scope: _stats_totals(scope, rolled, raw) for scope in scopes}
    largest = _largest_rows(base=base, totals=totals, now=now)
    return {
        scope: [
            WindowStats(
                label=label,
                seconds=seconds,
                long_usd=_usd(totals[scope][f"long_{label}"]),
                short_usd=_usd(totals[scope][f"short_{label}"]),
                count=int(totals[scope][f"count_{label}"]),
                largest=largest.get((scope, label)),
            )
            for label, seconds in STATS_WINDOWS
        ]
        for scope in scopes
    }


def _stats_rolled(*, scopes: list[str | None], windows: list) -> dict[str, dict]:
    """Return rollup scope ("" for all-market) → its whole-minute aggregates per window."""
    aggregates = {}
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
        .values("scope")
        .annotate(**aggregates)
        .order_by()
    )
    return {row.pop("scope"): row for row in rows}


def _stats_raw(*, base: QuerySet[Liquidation], windows: list, watermark: int) -> dict[str, dict]:
    """Return symbol → its aggregates per window over the rows the rollup does not cover."""
    newer = Q(id__gt=watermark)
    uncovered = newer
    aggregates = {}
    for label, since, _, whole_from in windows:
        edge = Q(trade_time__gte=since, trade_time__lt=whole_from)
        uncovered |= edge
        mine = Q(trade_time__gte=since) & (edge | newer)
        aggregates[f"long_{label}"] = Sum("notional_usd", filter=mine & Q(side=Side.SELL))
        aggregates[f"short_{label}"] = Sum("notional_usd", filter=mine & Q(side=Side.BUY))
        aggregates[f"count_{label}"] = Count("trade_time", filter=mine)
        aggregates[f"max_{label}"] = Max("notional_usd", filter=mine)
    rows = base.filter(uncovered).values("symbol").annotate(**aggregates).order_by()
    return {row.pop("symbol"): row for row in rows}


def _stats_totals(scope: str | None, rolled: dict[str, dict], raw: dict[str, dict]) -> dict:
    """Add up one scope's rollup and raw aggregates (all-market: every symbol's raw rows)."""
    parts = [rolled.get(scope or "")]
    parts += raw.values() if scope is None else [raw.get(scope)]
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


# Keyset pagination on (trade_time, id): an opaque cursor names the last row seen.


class BadCursor(ValueError):
    """A cursor that this server did not hand out."""


@dataclass(frozen=True, slots=True)
class Cursor:
    trade_time_ms: int
    id: int

    def encode(self) -> str:
        raw = f"{self.trade_time_ms}:{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        if not token or len(token) > 64:
            raise BadCursor("cursor is empty or too long")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
            ms_text, id_text = raw.split(":")
            cursor = cls(trade_time_ms=int(ms_text), id=int(id_text))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise BadCursor("cursor is not one this server returned") from None
        if not (0 <= cursor.trade_time_ms < 7_258_118_400_000 and cursor.id > 0):
            raise BadCursor("cursor is out of range")
        return cursor

    @classmethod
    def after(cls, liquidation: Liquidation) -> Cursor:
        return cls(trade_time_ms=datetime_to_ms(liquidation.trade_time), id=liquidation.pk)

    @property
    def trade_time(self) -> datetime:
        return ms_to_datetime(self.trade_time_ms)


def datetime_to_ms(value: datetime) -> int:
    """Return epoch milliseconds of an aware datetime (exact, no float rounding)."""
    delta = value - ms_to_datetime(0)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass(frozen=True, slots=True)
class HistoryFilters:
    symbol: str | None = None
    side: str | None = None  # Side.BUY / Side.SELL
    min_usd: Decimal | None = None
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive


def liquidation_filtered(*, filters: HistoryFilters) -> QuerySet[Liquidation]:
    """Return liquidations matching the filters, unordered."""
    queryset = Liquidation.objects.all()
    if filters.symbol:
        queryset = queryset.filter(symbol=filters.symbol)
    if filters.side:
        queryset = queryset.filter(side=filters.side)
    if filters.min_usd:
        queryset = queryset.filter(notional_usd__gte=filters.min_usd)
    if filters.start:
        queryset = queryset.filter(trade_time__gte=filters.start)
    if filters.end:
        queryset = queryset.filter(trade_time__lt=filters.end)
    return queryset


def liquidation_page(
    *,
    filters: HistoryFilters,
    cursor: Cursor | None = None,
    limit: int,
    newest_first: bool = True,
) -> tuple[list[Liquidation], Cursor | None]:
    """Return one page after the cursor and the cursor of the next page (None at the end).

    The bound on trade_time alone is what the index range scan uses; the tie-break on id
    only filters rows sharing the cursor's millisecond, so page 10,000 costs as page 1.
    A rare min_usd is found through the amount index instead (_rare_amount_page_ids);
    with a side or a common min_usd the time index is walked for ids only. Either way the
    page's rows are then fetched by id, in the same (trade_time, id) order.
    """
    queryset = liquidation_filtered(filters=filters)
    if newest_first:
        ordering = ("-trade_time", "-id")
        if cursor is not None:
            at = cursor.trade_time
            queryset = queryset.filter(
                Q(trade_time__lte=at) & (Q(trade_time__lt=at) | Q(id__lt=cursor.id))
            )
    else:
        ordering = ("trade_time", "id")
        if cursor is not None:
            at = cursor.trade_time
            queryset = queryset.filter(
                Q(trade_time__gte=at) & (Q(trade_time__gt=at) | Q(id__gt=cursor.id))
            )
    queryset = queryset.order_by(*ordering)
    ids = None
    if filters.min_usd:
        ids = _rare_amount_page_ids(
            filters=filters, cursor=cursor, limit=limit, newest_first=newest_first
        )
    if ids is None and (filters.min_usd or filters.side):
        # Filters no time index leads with: walk the index for ids alone (on PostgreSQL an
        # index-only scan, side and amount being INCLUDE columns), then fetch by id.
        ids = list(queryset.values_list("id", flat=True)[: limit + 1])
    if ids is not None:
        queryset = Liquidation.objects.filter(pk__in=ids).order_by(*ordering)
    rows = list(queryset[: limit + 1])
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, Cursor.after(rows[-1])
    return rows, None


# At most this many rows in scope (all symbols or one) reaching min_usd: the amount is rare.
RARE_AMOUNT_ROWS = 20_000


def _rare_amount_page_ids(
    *, filters: HistoryFilters, cursor: Cursor | None, limit: int, newest_first: bool
) -> list[int] | None:
    """Return the ids of the page when min_usd is rare in scope, or None when it is not.

    A rare amount ("above $5M": a few dozen rows a year) is found by the amount index
    ((notional_usd) or (symbol, notional_usd), covering trade_time, id and side): count
    at most RARE_AMOUNT_ROWS + 1 rows reaching min_usd, biggest first (a bounded
    index-only range scan whatever the table size); if no more than RARE_AMOUNT_ROWS,
    take those rows again, keep the ones matching the other filters and the cursor, and
    order them by (trade_time, id). Walking the time index instead reads the whole record
    to find a handful of rows. When more rows reach the amount, matches are at least
    RARE_AMOUNT_ROWS / rows-in-scope dense and the caller walks the time index (None).
    """
    scope = Liquidation.objects.filter(notional_usd__gte=filters.min_usd)
    if filters.symbol:
        scope = scope.filter(symbol=filters.symbol)
    # Ordered by amount so that only the amount index serves it, stopping at the limit.
    top = scope.order_by("-notional_usd")[: RARE_AMOUNT_ROWS + 1]
    if top.count() > RARE_AMOUNT_ROWS:
        return None
    top_sql, top_params = top.values("id", "trade_time", "side").query.sql_with_params()
    stamp = connection.ops.adapt_datetimefield_value
    where, params = ["1 = 1"], []
    if filters.side:
        where.append("side = %s")
        params.append(filters.side)
    if filters.start:
        where.append("trade_time >= %s")
        params.append(stamp(filters.start))
    if filters.end:
        where.append("trade_time < %s")
        params.append(stamp(filters.end))
    if cursor is not None:
        at, past = stamp(cursor.trade_time), "<" if newest_first else ">"
        where.append(f"(trade_time {past} %s OR (trade_time = %s AND id {past} %s))")
        params += [at, at, cursor.id]
    order = "DESC" if newest_first else "ASC"
    sql = (
        f"SELECT id FROM ({top_sql}) candidates WHERE {' AND '.join(where)} "
        f"ORDER BY trade_time {order}, id {order} LIMIT %s"
    )
    with connection.cursor() as db:
        db.execute(sql, [*top_params, *params, limit + 1])
        return [row[0] for row in db.fetchall()]


def liquidation_latest(*, symbol: str | None, limit: int) -> QuerySet[Liquidation]:
    """Return the newest liquidations, for all symbols or one."""
    queryset = Liquidation.objects.order_by("-trade_time", "-id")
    if symbol:
        queryset = queryset.filter(symbol=symbol)
    return queryset[:limit]


def liquidation_max_id() -> int:
    """Return the highest liquidation id (0 when empty)."""
    return Liquidation.objects.aggregate(top=Max("id"))["top"] or 0


def liquidation_symbols_since(*, after_id: int, up_to_id: int, limit: int = 1000) -> list[str]:
    """Return symbols of the rows with after_id < id <= up_to_id (a primary-key range scan)."""
    return list(
        Liquidation.objects.filter(id__gt=after_id, id__lte=up_to_id)
        .order_by()
        .values_list("symbol", flat=True)
        .distinct()[:limit]
    )


def database_ping() -> None:
    """Run a trivial query; raises the driver's error when the database is unreachable."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


# Health: how long the worker's stream has been down, from the row it heartbeats into.

WORKER_DOWN_LIMIT = timedelta(minutes=5)
# The worker heartbeats every second; a row older than this means no worker is running.
HEARTBEAT_STALE = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    state: str  # the worker's own state, or "absent" when it stopped heartbeating
    connected_since: datetime | None
    last_event_age_s: float | None
    heartbeat_age_s: float | None
    disconnected_for_s: float | None  # None while streaming
    events_stored: int
    malformed_dropped: int

    @property
    def healthy(self) -> bool:
        if self.heartbeat_age_s is None:
            return False  # no worker ever reported
        return (
            self.disconnected_for_s is None
            or self.disconnected_for_s <= WORKER_DOWN_LIMIT.total_seconds()
        )


def worker_health(*, now: datetime) -> WorkerHealth:
    """Return the worker's state as /health reports it."""
    row = worker_state()
    if row is None or row["heartbeat_at"] is None:
        return WorkerHealth("absent", None, None, None, None, 0, 0)
    heartbeat_age = (now - row["heartbeat_at"]).total_seconds()
    alive = heartbeat_age <= HEARTBEAT_STALE.total_seconds()
    if alive and row["state"] == "streaming":
        down_since = None
    elif alive:
        down_since = row["disconnected_since"] or row["heartbeat_at"]
    else:
        # A dead worker stopped heartbeating: down since its last word at the latest.
        down_since = min(filter(None, (row["disconnected_since"], row["heartbeat_at"])))
    last_event = row["last_event_at"]
    return WorkerHealth(
        state=row["state"] if alive else "absent",
        connected_since=row["connected_since"] if alive else None,
        last_event_age_s=(now - last_event).total_seconds() if last_event else None,
        heartbeat_age_s=heartbeat_age,
        disconnected_for_s=(now - down_since).total_seconds() if down_since else None,
        events_stored=row["events_stored"],
        malformed_dropped=row["malformed_dropped"],
    )

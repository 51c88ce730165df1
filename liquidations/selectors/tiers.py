"""Reads: one keyset page of liquidations of at least an amount, through the tier indexes.

"At least $X, newest first" on the time index reads every row until enough are that big:
the whole record when X is rare. Here each size tier (usd_tiers.py) at or above X is read
newest first from its own index range, at most a page each, and merged; then the tier X
falls in, filtered by amount, only as far back as that page reached. The tiers are
geometric, so that costs a few pages of index entries whatever X, the other filters and
the size of the record. The indexes (liquidation_tier_time, liquidation_symbol_tier_time)
hold every column the filters read, so the walk never touches the table.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connection

from ..models import Liquidation
from ..usd_tiers import BOUNDS, tier_low, tier_of, tier_sql

if TYPE_CHECKING:  # history.py calls in here
    from .history import Cursor, HistoryFilters

TOP_TIER = len(BOUNDS)


def liquidation_amount_page_ids(
    *, filters: HistoryFilters, cursor: Cursor | None, limit: int, newest_first: bool
) -> list[int]:
    """Return the ids of the page (limit + 1 at most: one more says there is a next page),
    in page order, for filters with a min_usd."""
    assert filters.min_usd is not None
    wanted = limit + 1
    lowest = tier_of(filters.min_usd)
    whole = [tier for tier in range(lowest, TOP_TIER + 1) if tier_low(tier) >= filters.min_usd]
    rows = _tiers_first(whole, filters=filters, cursor=cursor, newest_first=newest_first, n=wanted)
    if tier_low(lowest) < filters.min_usd:
        # The tier min_usd falls in: its amounts filtered, read no further back in time
        # than the whole tiers' page reached (a row beyond it could not be on the page).
        reach = rows[wanted - 1][1] if len(rows) >= wanted else None
        rows += _tiers_first(
            [lowest],
            filters=filters,
            cursor=cursor,
            newest_first=newest_first,
            n=wanted,
            min_usd=True,
            reach=reach,
        )
        rows.sort(key=lambda row: (row[1], row[0]), reverse=newest_first)
    return [row[0] for row in rows[:wanted]]


def _tiers_first(
    tiers: list[int],
    *,
    filters: HistoryFilters,
    cursor: Cursor | None,
    newest_first: bool,
    n: int,
    min_usd: bool = False,
    reach: Any = None,
) -> list[tuple[int, Any]]:
    """(id, trade_time) of the first n rows of these tiers in page order: n from each tier's
    index range, merged (UNION ALL, which both databases sort as one small set)."""
    if not tiers:
        return []
    where, params = _conditions(filters, cursor=cursor, newest_first=newest_first)
    if min_usd:
        where.append('"notional_usd" >= %s')
        params.append(connection.ops.adapt_decimalfield_value(filters.min_usd))
    if reach is not None:
        where.append('"trade_time" >= %s' if newest_first else '"trade_time" <= %s')
        params.append(
            connection.ops.adapt_datetimefield_value(reach)
            if isinstance(reach, datetime)
            else reach
        )
    order = "DESC" if newest_first else "ASC"
    order_by = f'ORDER BY "trade_time" {order}, "id" {order}'
    table = connection.ops.quote_name(Liquidation._meta.db_table)
    tier = tier_sql()
    arms = [
        f'SELECT "id", "trade_time" FROM (SELECT "id", "trade_time" FROM {table} '
        f"WHERE {tier} = {number} AND {' AND '.join(where)} {order_by} LIMIT %s) AS tier_{number}"
        for number in tiers
    ]
    with connection.cursor() as db:
        db.execute(
            f"{' UNION ALL '.join(arms)} {order_by} LIMIT %s",
            [value for _ in tiers for value in (*params, n)] + [n],
        )
        return [(row[0], row[1]) for row in db.fetchall()]


def _conditions(
    filters: HistoryFilters, *, cursor: Cursor | None, newest_first: bool
) -> tuple[list[str], list[Any]]:
    """The other filters and the cursor, as SQL on the tier index's columns."""
    stamp = connection.ops.adapt_datetimefield_value
    where: list[str] = ["1 = 1"]
    params: list[Any] = []
    for column, value in (
        ("symbol", filters.symbol),
        ("venue", filters.venue),
        ("side", filters.side),
    ):
        if value:
            where.append(f'"{column}" = %s')
            params.append(value)
    if filters.start:
        where.append('"trade_time" >= %s')
        params.append(stamp(filters.start))
    if filters.end:
        where.append('"trade_time" < %s')
        params.append(stamp(filters.end))
    if cursor is not None:
        at, past = stamp(cursor.trade_time), "<" if newest_first else ">"
        # The bound alone is the index range; the id only breaks the millisecond's ties.
        where.append(f'"trade_time" {past}= %s AND ("trade_time" {past} %s OR "id" {past} %s)')
        params += [at, at, cursor.id]
    return where, params

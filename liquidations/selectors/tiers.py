"""Reads: one keyset page of liquidations of at least an amount, through the tier indexes.

"At least $X, newest first" on the time index reads every row until enough are that big:
the whole record when X is rare. Here each size tier (usd_tiers.py) at or above X is read
newest first from its own index range, at most a page each, and merged; then the tier X
falls in, filtered by amount, only as far back as that page reached. The tiers are
geometric, so that costs a few pages of index entries whatever X, the other filters and
the size of the record. The indexes (liquidation_tier_time, liquidation_symbol_tier_time)
hold every column the filters read, so the walk never touches the table.

Each tier's query is the history's own keyset queryset (its filters and cursor, from
selectors/history.py) narrowed to the tier; only the UNION ALL around them is SQL here,
because SQLite takes no LIMIT inside the arms of a compound query that Django writes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL

from ..models import Liquidation
from ..usd_tiers import BOUNDS, UsdTier, tier_low, tier_of

TOP_TIER = len(BOUNDS)
_TIER = object()  # where a tier's number goes in a compiled arm's parameters


def liquidation_amount_page_ids(
    *, queryset: QuerySet[Liquidation], min_usd: Decimal, limit: int, newest_first: bool
) -> list[int]:
    """Return the ids of the page (limit + 1 at most: one more says there is a next page),
    in page order.

    queryset: the page's rows in page order, filtered by min_usd and the other filters and
    after the cursor (history's liquidation_keyset).
    """
    wanted = limit + 1
    lowest = tier_of(min_usd)
    whole = [tier for tier in range(lowest, TOP_TIER + 1) if tier_low(tier) >= min_usd]
    rows = _tiers_first(queryset, whole, newest_first=newest_first, n=wanted)
    if tier_low(lowest) < min_usd:
        # The tier min_usd falls in (the queryset filters its amounts), read no further
        # back in time than the whole tiers' page reached: a row beyond it could not be
        # on the page.
        if len(rows) >= wanted:
            # The time as the database returned it (SQLite: its stored text), compared as is.
            reach = RawSQL("%s", (rows[wanted - 1][1],))
            bound = {"trade_time__gte" if newest_first else "trade_time__lte": reach}
            queryset = queryset.filter(**bound)
        rows += _tiers_first(queryset, [lowest], newest_first=newest_first, n=wanted)
        rows.sort(key=lambda row: (row[1], row[0]), reverse=newest_first)
    return [row[0] for row in rows[:wanted]]


def _tiers_first(
    queryset: QuerySet[Liquidation], tiers: list[int], *, newest_first: bool, n: int
) -> list[tuple[int, Any]]:
    """(id, trade_time) of the first n rows of these tiers in page order: n from each tier's
    index range, merged (UNION ALL, which both databases sort as one small set)."""
    if not tiers:
        return []
    # One arm compiled once, its tier a placeholder object among the parameters: each
    # arm is the same SQL with another tier (compiling 16 arms cost ~5 ms a page).
    arm = queryset.alias(usd_tier=UsdTier()).filter(usd_tier=RawSQL("%s", (_TIER,)))
    sql, arm_params = arm.values_list("id", "trade_time")[:n].query.sql_with_params()
    arms = [f'SELECT "id", "trade_time" FROM ({sql}) AS tier_{tier}' for tier in tiers]
    params = [tier if p is _TIER else p for tier in tiers for p in arm_params]
    order = "DESC" if newest_first else "ASC"
    with connection.cursor() as db:
        db.execute(
            f'{" UNION ALL ".join(arms)} ORDER BY "trade_time" {order}, "id" {order} LIMIT %s',
            [*params, n],
        )
        return [(row[0], row[1]) for row in db.fetchall()]

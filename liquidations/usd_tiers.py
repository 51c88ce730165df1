"""Size tiers of a liquidation's USD amount, for the indexes that find "above $X, newest
first" without walking the whole record.

A tier is a band of amounts, three per decade ($100k, $250k, $500k, $1M, ...). Indexed
as (tier, trade_time, id), every tier is its own newest-first list, so "at least $X" is
the merge of the tiers above X (each read from its newest row, taking only what the page
needs) plus the tier X falls in, filtered by amount and read only as far back as the
others reached. Tiers grow geometrically, so that last tier holds about as many rows in
that time as the tiers above it: a page reads a few times its own size of index entries,
however rare or common the amount and however large the record (selectors/tiers.py).

The tier is an expression over notional_usd (an index on it, no stored column): the
selectors write the same SQL that the index holds, which both PostgreSQL and SQLite
match to the index. Changing BOUNDS changes that expression: it needs a migration that
rebuilds both indexes (0010 built them), or the selectors' SQL no longer matches them.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Func, SmallIntegerField

# The lowest amount of tiers 1, 2, ...; tier 0 is everything below $1,000.
BOUNDS: tuple[int, ...] = (
    1_000, 2_500, 5_000,
    10_000, 25_000, 50_000,
    100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
    10_000_000, 25_000_000, 50_000_000,
    100_000_000,
)  # fmt: skip


def tier_sql(column: str = '"notional_usd"') -> str:
    """The tier of column, as SQL: CASE WHEN column >= 100000000 THEN 16 ... ELSE 0 END."""
    whens = " ".join(
        f"WHEN {column} >= {bound} THEN {tier}"
        for tier, bound in reversed(list(enumerate(BOUNDS, start=1)))
    )
    return f"CASE {whens} ELSE 0 END"


def tier_of(usd: Decimal | int) -> int:
    """The tier of an amount (as tier_sql computes it)."""
    return sum(1 for bound in BOUNDS if usd >= bound)


def tier_low(tier: int) -> int:
    """The lowest amount in the tier."""
    return 0 if tier == 0 else BOUNDS[tier - 1]


class UsdTier(Func):
    """tier_sql() as an index expression (Meta.indexes of Liquidation). Its SQL is the same
    on PostgreSQL and SQLite (a double-quoted column name), so the template is literal."""

    template = tier_sql()
    output_field = SmallIntegerField()

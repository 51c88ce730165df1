"""The query planner's statistics: what lets SQLite pick the right index.

PostgreSQL's autovacuum keeps its statistics fresh. SQLite has none until ANALYZE runs,
and without them its planner guesses: `venue = 'okx' ORDER BY trade_time DESC LIMIT 100`
took the (venue, …) unique index and sorted every OKX row (a tenth of the record) instead
of walking the time index for the newest. A sampled ANALYZE (analysis_limit) is no help
here: the first thousand entries of that index share one venue, so it reports a
thousand rows per venue. A full ANALYZE reads every index once, so it runs only when the
record has no statistics yet or has doubled since they were taken (as SQLite's own
`PRAGMA optimize` does in later releases): a handful of times over the record's life.
"""

from __future__ import annotations

from django.db import connections

from ..models import Liquidation

# Statistics are refreshed once the record holds this many times the rows they describe.
GROWTH = 2.0


def planner_stats_refresh(*, using: str = "default") -> bool:
    """Refresh SQLite's planner statistics when due; return whether ANALYZE ran."""
    connection = connections[using]
    if connection.vendor != "sqlite":
        return False
    table = Liquidation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT MAX(id) FROM "{table}"')  # rows are only ever appended
        rows = cursor.fetchone()[0] or 0
        described = _described_rows(cursor, table)
        if rows == 0 or (described and rows < described * GROWTH):
            return False
        cursor.execute(f'ANALYZE "{table}"')
    return True


def _described_rows(cursor, table: str) -> int:
    """Rows the table had when its statistics were taken (0: none yet)."""
    cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
    if cursor.fetchone() is None:
        return 0
    cursor.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = %s AND idx IS NOT NULL", [table])
    found = cursor.fetchone()
    return int(found[0].split()[0]) if found else 0

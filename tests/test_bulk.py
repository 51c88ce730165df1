"""The synthetic bulk loader (COPY on PostgreSQL, executemany on SQLite)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db.models import Max, Min

from liquidations.devtools.bulk import bulk_load_synthetic
from liquidations.models import Liquidation, RollupState
from liquidations.selectors.stats import liquidation_stats

END = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def check_load() -> None:
    result = bulk_load_synthetic(count=3000, days=2, seed=7, end=END)
    assert result.count == 3000
    rows = list(Liquidation.objects.all())
    assert len(rows) == 3000
    span = Liquidation.objects.aggregate(first=Min("trade_time"), last=Max("trade_time"))
    assert END - timedelta(days=2) <= span["first"] < END - timedelta(days=2) + timedelta(hours=1)
    assert END - timedelta(hours=1) < span["last"] <= END
    assert len({(r.symbol, r.side, r.trade_time) for r in rows}) == 3000
    for row in rows:
        assert row.notional_usd == row.filled_quantity * row.average_price
        assert row.side in ("BUY", "SELL")
    assert {r.symbol for r in rows} >= {"BTCUSDT", "ETHUSDT"}
    # Rolled up as the worker would: stats agree with the rows they summarize.
    assert RollupState.objects.get().last_id == max(r.pk for r in rows)
    day = [r for r in rows if r.trade_time >= END - timedelta(hours=24)]
    (_, _, _, last_24h) = liquidation_stats(now=END)
    assert last_24h.count == len(day)
    longs = sum(r.notional_usd for r in day if r.side == "SELL")
    assert abs(last_24h.long_usd - longs) <= 0.01


@pytest.mark.django_db
def test_bulk_load_spreads_realistic_rows_and_rolls_them_up():
    check_load()


@pytest.mark.production
@pytest.mark.django_db
def test_pg_bulk_load_with_copy():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    before = _index_definitions()
    with CaptureQueriesContext(connection) as queries:
        check_load()
    # Into the empty table its indexes were built after the rows: all back, as they were.
    statements = [query["sql"] for query in queries]
    assert sum(sql.startswith("DROP INDEX") for sql in statements) == len(before) - 2
    assert _index_definitions() == before
    assert any("UNIQUE" in definition for definition in before)
    # Into a table holding rows, nothing is set aside: still the same indexes.
    bulk_load_synthetic(count=10, days=1, seed=8, end=END)
    assert _index_definitions() == before
    assert Liquidation.objects.count() == 3010


def _index_definitions() -> set[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s::regclass",
            [Liquidation._meta.db_table],
        )
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.django_db
def test_load_synthetic_command_reports_its_rate():
    out = io.StringIO()
    call_command("load_synthetic", "--count", "200", "--days", "1", "--seed", "1", stdout=out)
    assert out.getvalue().startswith("Loaded 200 liquidations over 1 days in ")
    assert Liquidation.objects.count() == 200


@pytest.mark.django_db
def test_a_load_logs_its_progress_when_stderr_is_not_a_terminal(caplog, monkeypatch):
    """A benchmark's or a container's log shows how far a long load is, and its rate."""
    from liquidations.devtools import bulk

    monkeypatch.setattr(bulk, "PROGRESS_LOG_SECONDS", 0.0)
    with caplog.at_level("INFO", logger="liquidations.devtools.bulk"):
        bulk_load_synthetic(count=500, days=1, seed=3, end=END, progress=True)
    written = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Written ")]
    assert len(written) == 499  # every row but the last, at this interval
    assert written[0].startswith("Written 1 of 500 rows (0%), ")
    assert written[-1].startswith("Written 499 of 500 rows (100%), ")
    assert "rows/s, about" in written[-1]
    assert Liquidation.objects.count() == 500

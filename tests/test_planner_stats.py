"""SQLite's planner statistics: refreshed after a bulk load and by the worker, so the
planner walks the time index for a venue's newest rows instead of sorting them all."""

from __future__ import annotations

import asyncio

import pytest
from django.db import connection

from liquidations.devtools.bulk import bulk_load_synthetic
from liquidations.ingest import tasks
from liquidations.services.planner_stats import planner_stats_refresh
from tests.factories import liq, store

NEWEST_OF_A_VENUE = (
    "SELECT id FROM liquidations_liquidation WHERE venue = 'okx' "
    "ORDER BY trade_time DESC, id DESC LIMIT 100"
)


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return " | ".join(row[3] for row in cursor.fetchall())


def _described() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT stat FROM sqlite_stat1 WHERE idx = 'liquidation_newest_cover'")
        return int(cursor.fetchone()[0].split()[0])


def _forget_stats() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if cursor.fetchone():
            cursor.execute("DELETE FROM sqlite_stat1")


def _stats_rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if not cursor.fetchone()[0]:
            return 0
        cursor.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'liquidations_liquidation'")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_a_bulk_load_leaves_statistics_that_pick_the_time_index():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's planner statistics (PostgreSQL's autovacuum keeps its own)")
    # Without statistics, the unique (venue, …) index wins and every OKX row is sorted.
    assert "TEMP B-TREE FOR ORDER BY" in _plan(NEWEST_OF_A_VENUE)
    bulk_load_synthetic(count=20_000, days=2, seed=3)
    assert _stats_rows() > 0
    plan = _plan(NEWEST_OF_A_VENUE)
    assert "liquidation_newest_cover" in plan and "TEMP B-TREE" not in plan
    # Taken again only once the record has doubled (a full ANALYZE reads every index).
    assert planner_stats_refresh() is False
    bulk_load_synthetic(count=5_000, days=1, seed=4)  # 25,000 rows: not yet
    assert planner_stats_refresh() is False
    assert _described() == 20_000
    bulk_load_synthetic(count=20_000, days=1, seed=5)  # 45,000: this load's refresh ran
    assert _described() == 45_000


@pytest.mark.django_db(transaction=True)
async def test_the_worker_refreshes_them_at_start_and_every_interval():
    from asgiref.sync import sync_to_async

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's planner statistics")
    await sync_to_async(store)(*(liq(T=1_766_880_000_000 + n) for n in range(50)))
    await sync_to_async(_forget_stats)()  # flushing tables leaves them
    assert await sync_to_async(_stats_rows)() == 0
    task = asyncio.create_task(tasks.planner_stats_loop(first=0.01, interval=0.05))
    try:
        for _ in range(200):
            if await sync_to_async(_stats_rows)():
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await sync_to_async(_stats_rows)() > 0

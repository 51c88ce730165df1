"""The worker's database threads keep their SQLite connection from call to call.

(A pooled PostgreSQL connection is handed back and taken again at each call; the outage
tests show the worker's threads reconnecting through the pool.)"""

from __future__ import annotations

import pytest
from django.db import connection

from liquidations.ingest.dbthread import DbThread
from liquidations.models import Liquidation

pytestmark = pytest.mark.django_db(transaction=True)


async def test_sqlite_keeps_its_connection_across_calls():
    if connection.vendor != "sqlite":
        pytest.skip("embedded-mode test: SQLite's connection is kept, a pooled one is not")
    db = DbThread(name="test-db")
    try:
        # A temporary table lives as long as its connection.
        await db.call(lambda: connection.cursor().execute("CREATE TEMP TABLE kept (x INTEGER)"))
        assert await db.call(lambda: Liquidation.objects.count()) == 0
        await db.call(lambda: connection.cursor().execute("SELECT count(*) FROM kept"))
    finally:
        await db.aclose()

"""Covering amount indexes for history's rare amounts ("every liquidation above $5M").

On PostgreSQL the indexes are built and dropped CONCURRENTLY: on a record of tens of
millions of rows a plain CREATE INDEX would hold back the worker's inserts for minutes
(about 1-2 minutes per index at 20 million rows). The new covering amount index is built
before the plain one it replaces is dropped, so the stats' largest-row lookup always has
an index. Other databases (SQLite) build them as usual.
"""

from django.db import migrations, models

from liquidations.migration_operations import AddIndexOnline, RemoveIndexOnline


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("liquidations", "0004_worker_requests"),
    ]

    operations = [
        AddIndexOnline(
            model_name="liquidation",
            index=models.Index(
                fields=["notional_usd"],
                include=("trade_time", "id", "side", "symbol"),
                name="liquidation_usd_cover",
            ),
        ),
        AddIndexOnline(
            model_name="liquidation",
            index=models.Index(
                fields=["symbol", "notional_usd"],
                include=("trade_time", "id", "side"),
                name="liquidation_symbol_usd",
            ),
        ),
        RemoveIndexOnline(
            model_name="liquidation",
            name="liquidation_usd",
        ),
    ]

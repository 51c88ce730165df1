"""Size-tier indexes: "at least $X, newest first" without walking the record.

At 20 million rows, amounts just common enough to fail history's rare-amount test (at
least $250k: 62 ms p95) walked the time index until 50 of them turned up. Each index
lists every size tier (usd_tiers.py) newest first, with the columns history filters on,
so selectors/tiers.py reads a few pages of entries whatever the amount. Built
CONCURRENTLY on PostgreSQL: the worker keeps writing meanwhile.
"""

from django.db import migrations, models

import liquidations.usd_tiers
from liquidations.migration_operations import AddIndexOnline


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("liquidations", "0009_venue_in_covering_indexes"),
    ]

    operations = [
        AddIndexOnline(
            model_name="liquidation",
            index=models.Index(
                liquidations.usd_tiers.UsdTier(),
                models.OrderBy(models.F("trade_time"), descending=True),
                models.OrderBy(models.F("id"), descending=True),
                models.F("notional_usd"),
                models.F("venue"),
                models.F("side"),
                models.F("symbol"),
                name="liquidation_tier_time",
            ),
        ),
        AddIndexOnline(
            model_name="liquidation",
            index=models.Index(
                models.F("symbol"),
                liquidations.usd_tiers.UsdTier(),
                models.OrderBy(models.F("trade_time"), descending=True),
                models.OrderBy(models.F("id"), descending=True),
                models.F("notional_usd"),
                models.F("venue"),
                models.F("side"),
                name="liquidation_symbol_tier_time",
            ),
        ),
    ]

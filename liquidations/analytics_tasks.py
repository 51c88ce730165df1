"""Analytics tasks the ingest worker runs beside the stream: live stats and the backfill."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from django.conf import settings

from .backfill import backfill_run
from .live_stats import StatsPublisher


def analytics_tasks_start(*, channel_layer, since: datetime | None) -> list[asyncio.Task]:
    """Start the stats publisher and, with LIQUIDATION_API_BASE_URL set, one backfill."""
    tasks = [
        asyncio.create_task(StatsPublisher(channel_layer=channel_layer).run(), name="live-stats")
    ]
    if settings.LIQUIDATION_API_BASE_URL:
        tasks.append(
            asyncio.create_task(
                backfill_run(base_url=settings.LIQUIDATION_API_BASE_URL, since=since),
                name="backfill",
            )
        )
    return tasks


async def analytics_tasks_stop(tasks: list[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task

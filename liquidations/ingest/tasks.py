"""Background tasks of the ingest: start the side tasks, end tasks within bounds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection

from ..services.planner_stats import planner_stats_refresh
from .alerts import AlertsTask
from .backfill import backfill_run
from .dbthread import DbThread
from .stats_publisher import StatsPublisher

logger = logging.getLogger(__name__)

# SQLite's planner statistics: a minute after start (not among the start's own writes),
# then hourly, as the record grows.
PLANNER_STATS_FIRST_SECONDS = 60.0
PLANNER_STATS_SECONDS = 3600.0


def side_tasks_start(*, channel_layer: Any, since: datetime | None) -> list[asyncio.Task[Any]]:
    """Start the stats publisher, the alerts, SQLite's planner statistics and, with
    LIQUIDATION_API_BASE_URL, a backfill."""
    tasks: list[asyncio.Task[Any]] = [
        asyncio.create_task(StatsPublisher(channel_layer=channel_layer).run(), name="live-stats"),
        asyncio.create_task(AlertsTask().run(), name="alerts"),
    ]
    if connection.vendor == "sqlite":
        tasks.append(asyncio.create_task(planner_stats_loop(), name="planner-stats"))
    if settings.LIQUIDATION_API_BASE_URL:
        tasks.append(
            asyncio.create_task(
                backfill_run(base_url=settings.LIQUIDATION_API_BASE_URL, since=since),
                name="backfill",
            )
        )
    return tasks


async def planner_stats_loop(
    *, first: float = PLANNER_STATS_FIRST_SECONDS, interval: float = PLANNER_STATS_SECONDS
) -> None:
    """Refresh SQLite's planner statistics after `first` s, then every interval (when due:
    services/planner_stats)."""
    await asyncio.sleep(first)
    db = DbThread(name="planner-stats")
    try:
        while True:
            try:
                await db.call(planner_stats_refresh)
            except Exception as exc:
                # Locked by a long write, or the disk: the planner keeps its old figures.
                logger.warning("Refreshing the planner statistics failed: %r", exc)
            await asyncio.sleep(interval)
    finally:
        await db.aclose(wait=False)


async def side_tasks_stop(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_ended(tasks: Iterable[asyncio.Task], *, timeout: float) -> None:
    """Wait for ended or cancelled tasks to finish; name any still running after timeout.

    A bounded wait: a task that swallowed its cancellation must not hang the stop (seen
    once in a benchmark, never reproduced), and the log says which one it was.
    """
    tasks = list(tasks)
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        logger.error("Task %s is still running %g s after it was stopped", task.get_name(), timeout)


async def finish_or_cancel(task: asyncio.Task, *, timeout: float) -> None:
    """Wait for a task to end on its own; cancel it if it takes longer than timeout."""
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=timeout)
    except TimeoutError:
        logger.error("Task %s did not finish within %g s; cancelling it", task.get_name(), timeout)
        task.cancel()
    except Exception:
        logger.exception("Task %s failed", task.get_name())


def log_task_end(task: asyncio.Task) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("Ingest task %s died", task.get_name(), exc_info=exc)

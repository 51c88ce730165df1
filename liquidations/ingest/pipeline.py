"""The ingest: every enabled venue's pipeline, side by side, and what they share.

Each venue runs on its own (venue.py: connection, backlog, writer, listing, gaps). Shared
are the heartbeat (the worker's state, per venue, for pages and commands in other
processes), the stats publisher and an optional backfill (tasks.py). Nothing here runs
inside a message handler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..live.broadcast import worker_status_broadcast
from ..selectors.status import worker_state_last_seen
from ..services.worker_state import worker_state_save
from .backlog import MAX_BACKLOG_BYTES
from .dbthread import DbThread
from .status import IngestStatus, VenueStatus
from .symbols import symbols_sync
from .tasks import side_tasks_start, side_tasks_stop
from .venue import VenueIngest
from .venues import enabled_venues, venue_adapter

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0


class Ingest:
    """Every enabled venue's ingest, their shared heartbeat and side tasks."""

    def __init__(self, *, channel_layer: Any, max_backlog_bytes: int = MAX_BACKLOG_BYTES) -> None:
        self.channel_layer = channel_layer
        self.max_backlog_bytes = max_backlog_bytes
        self.status = IngestStatus()
        self.venues: dict[str, VenueIngest] = {}
        # The heartbeat's own connection: a venue's stuck write never delays it.
        self.db = DbThread(name="ingest-state")
        self._heartbeat: asyncio.Task | None = None
        self._side_tasks: list[asyncio.Task] = []
        self._idle_reason = "worker not running"
        self._state_failing_since: float | None = None
        self._state_failure_logged = 0.0

    @property
    def running(self) -> bool:
        return self._heartbeat is not None

    async def start(self) -> None:
        """Start every venue enabled in the settings, each on its own connection."""
        if self.running:
            return
        # The record has a hole from the last sign of life of a worker until we connect.
        try:
            last_seen = await self.db.call(worker_state_last_seen)
        except Exception:
            logger.exception("Reading the last worker heartbeat failed")
            last_seen = None
        names = enabled_venues()
        for name in names:
            if name not in self.venues:
                self.venues[name] = VenueIngest(
                    adapter=venue_adapter(name),
                    channel_layer=self.channel_layer,
                    max_backlog_bytes=self.max_backlog_bytes,
                )
        self.status.venues = {name: self.venues[name].status for name in names}
        for name in names:
            await self.venues[name].start(
                adapter=venue_adapter(name), last_seen=last_seen, idle_reason=self._idle_reason
            )
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="ingest-heartbeat")
        self._side_tasks = side_tasks_start(channel_layer=self.channel_layer, since=last_seen)
        logger.info("Ingest started: %s", ", ".join(names))

    async def stop(self) -> None:
        """Stop every venue, then store and broadcast everything already received."""
        if not self.running:
            return
        await asyncio.gather(*(venue.stop() for venue in self.venues.values()))
        assert self._heartbeat is not None
        self._heartbeat.cancel()
        try:
            await self._heartbeat
        except asyncio.CancelledError:
            pass
        self._heartbeat = None
        await side_tasks_stop(self._side_tasks)
        self._idle_reason = "stream stopped"
        await self.save_state()
        await worker_status_broadcast(channel_layer=self.channel_layer, status=self.status)
        logger.info(
            "Ingest stopped: %d received, %d stored, %d duplicates skipped, %d malformed dropped",
            self.status.events_received,
            self.status.events_stored,
            self.status.duplicates_skipped,
            self.status.malformed_dropped,
        )

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.save_state()
            await worker_status_broadcast(channel_layer=self.channel_layer, status=self.status)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def sync_symbols(self) -> int:
        """Fetch Binance's exchangeInfo and upsert the Symbol table now; return the count."""
        binance = self.venues.get("binance")
        status = binance.status if binance is not None else VenueStatus(venue="binance")
        return await symbols_sync(db=self.db, status=status)

    async def save_state(self) -> None:
        """Record the status for other processes; log a failing database once a minute."""
        try:
            await self.db.call(worker_state_save, status=self.status)
        except Exception as exc:
            # Once with the traceback, then a line a minute while the database is away.
            now = time.monotonic()
            if self._state_failing_since is None:
                logger.exception("Saving the worker state failed")
                self._state_failing_since = self._state_failure_logged = now
            elif now - self._state_failure_logged >= 60:
                logger.warning(
                    "Saving the worker state still failing after %.0f s: %s",
                    now - self._state_failing_since,
                    exc,
                )
                self._state_failure_logged = now
            return
        if self._state_failing_since is not None:
            logger.info("Saving the worker state works again")
            self._state_failing_since = None

    async def aclose(self) -> None:
        """Close every database thread (the venues' and the heartbeat's)."""
        for venue in self.venues.values():
            await venue.aclose()
        await self.db.aclose()

"""One venue's batch writer: backlog → parsed batch → store → broadcast, adaptively.

An idle writer stores the first event at once; while a write is in flight, newer frames
pile up in the backlog and go in the next batch. Under load batches are also held
LIQUIDATION_BATCH_INTERVAL apart (the first event after a quiet spell still goes at
once): each batch costs a transaction, a publish and a fan-out round in every web
process, whatever its size.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from ..live.broadcast import broadcast
from ..upstream.events import LiquidationEvent
from .backlog import Backlog
from .dbthread import DbThread
from .status import VenueStatus
from .store import store_and_render

logger = logging.getLogger(__name__)

MAX_BATCH = 5000


class BatchWriter:
    """Take frames from the backlog, parse them (parse), store and broadcast each batch."""

    def __init__(
        self,
        *,
        queue: Backlog,
        parse: Callable[[list[bytes]], Awaitable[list[LiquidationEvent]]],
        db: DbThread,
        status: VenueStatus,
        channel_layer: Any,
    ) -> None:
        self.queue = queue
        self.parse = parse
        self.db = db
        self.status = status
        self.channel_layer = channel_layer

    async def run(self) -> None:
        """Write batches until the backlog is closed and empty."""
        interval = settings.LIQUIDATION_BATCH_INTERVAL
        loop = asyncio.get_running_loop()
        last_batch_at = -interval
        storing: asyncio.Task | None = None
        try:
            while frames := await self.queue.take(MAX_BATCH):
                # Parsed while the previous batch is being stored: its database round
                # trips release the GIL, so parsing costs the writer no extra time.
                batch = await self.parse(frames)
                if storing is not None:
                    await storing
                wait = last_batch_at + interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                last_batch_at = loop.time()
                if len(frames) < MAX_BATCH:
                    batch += await self.parse(self.queue.take_nowait(MAX_BATCH - len(frames)))
                del frames
                storing = (
                    asyncio.create_task(self.store(batch), name="ingest-store") if batch else None
                )
                del batch
            if storing is not None:
                await storing
        except asyncio.CancelledError:
            if storing is not None:
                storing.cancel()
            raise

    async def flush(self) -> None:
        """Store what a cancelled writer left in the backlog (a few tries, then give up)."""
        while frames := self.queue.take_nowait(MAX_BATCH):
            batch = await self.parse(frames)
            if batch:
                await self.store(batch, retries=2)

    async def store(self, batch: list[LiquidationEvent], *, retries: int | None = None) -> None:
        """Store and broadcast a batch; retry while the database is unavailable."""
        delay = 0.5
        attempt = 0
        while True:
            try:
                stored, messages = await self.db.call(store_and_render, batch)
                break
            except (OperationalError, InterfaceError) as exc:
                attempt += 1
                if retries is not None and attempt > retries:
                    logger.error("Gave up storing %d events: %s", len(batch), exc)
                    return
                # Database away or locked: keep the batch, try again. Events arriving
                # meanwhile wait in the backlog.
                logger.warning(
                    "Storing %d %s events failed (%s); retry %d in %.1f s",
                    len(batch),
                    self.status.venue,
                    exc,
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            except Exception:
                # Not transient (a bug or a value the database refuses): drop it loudly
                # rather than block the stream forever.
                logger.exception("Storing a batch of %d events failed; batch dropped", len(batch))
                return
        self.status.events_stored += len(stored)
        self.status.duplicates_skipped += len(batch) - len(stored)
        if stored:
            self.status.last_event_at = timezone.now()
            try:
                await broadcast(channel_layer=self.channel_layer, messages=messages)
            except Exception:
                logger.exception("Broadcasting %d stored rows failed", len(stored))

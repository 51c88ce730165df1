"""One venue's batch writer: backlog → parsed batch → store → broadcast, whatever befalls.

Adaptive batching: an idle writer stores the first event at once; while a write is in
flight, newer frames pile up in the backlog and go in the next batch. Each batch is
published as soon as it is stored, never held on a clock: coalescing for the viewers'
sake happens in each web process, sized by its own load (live/coalescing.py).

Faults: the database away, the batch is kept and retried (the backlog holds what arrives
meanwhile). A row the database refuses: kept as a dead letter, the rest stored
(store.store_isolating). Redis away: the rows are stored all the same; web processes
catch up from the database once their channel layer is back (live/fanout.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.utils import timezone

from ..live.broadcast import Messages, broadcast
from ..logs import LIMITED, RateLimitedLog
from .backlog import Backlog
from .dbthread import DbThread
from .status import VenueStatus
from .store import TRANSIENT_ERRORS, Batch, StoreOutcome, store_isolating

logger = logging.getLogger(__name__)

MAX_BATCH = 5000
# While the database is away, the batch is tried again this often at most (the first
# retry sooner): it resumes within ~2 s of the database's return, not up to 30 s later.
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 2.0


class BatchWriter:
    """Take frames from the backlog, parse them (parse), store and broadcast each batch.

    Storing retries while the database is unavailable and isolates the rows it refuses.
    """

    def __init__(
        self,
        *,
        queue: Backlog,
        parse: Callable[[list[bytes]], Awaitable[Batch]],
        db: DbThread,
        status: VenueStatus,
        channel_layer: Any,
        log: RateLimitedLog,
    ) -> None:
        self.queue = queue
        self.parse = parse
        self.db = db
        self.status = status
        self.channel_layer = channel_layer
        self.log = log

    async def run(self) -> None:
        """Write batches until the backlog is closed and empty."""
        storing: asyncio.Task | None = None
        try:
            while frames := await self.queue.take(MAX_BATCH):
                # Parsed while the previous batch is being stored: its database round
                # trips release the GIL, so parsing costs the writer no extra time.
                batch = await self.parse(frames)
                if storing is not None:
                    await storing
                if len(frames) < MAX_BATCH:
                    batch.extend(await self.parse(self.queue.take_nowait(MAX_BATCH - len(frames))))
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

    async def store(self, batch: Batch, *, retries: int | None = None) -> None:
        """Store and broadcast a batch; retry while the database is unavailable.

        Rows the database refuses for another reason are kept as dead letters, and only
        they: every other row of the batch is stored (store_isolating).
        """
        outcome = await self._store_retrying(batch, retries=retries)
        if outcome is None:
            return
        stored = outcome.stored
        if outcome.dead_letters:
            self.status.dead_letters += outcome.dead_letters
            self.log.log(
                logging.ERROR,
                "dead letters",
                "The database refused %d of %d %s events, kept as dead letters: %s",
                outcome.dead_letters,
                len(batch),
                self.status.venue,
                outcome.error[:300],
                reason=outcome.error.split(":", 1)[0],
            )
        for frame in outcome.unkept:
            # Refused, and its dead letter too: the log is the last place it is kept.
            logger.error(
                "Refused %s event not kept as a dead letter: %s",
                self.status.venue,
                frame,
                extra={LIMITED: True},
            )
        refused = outcome.dead_letters + len(outcome.unkept)
        self.status.events_stored += len(stored)
        self.status.duplicates_skipped += len(batch) - len(stored) - refused
        if stored:
            self.status.last_event_at = timezone.now()
            await self._broadcast(outcome.messages, rows=len(stored))

    async def _store_retrying(self, batch: Batch, *, retries: int | None) -> StoreOutcome | None:
        """Store a batch, retrying while the database is unavailable (None: gave up)."""
        delay = RETRY_INITIAL_SECONDS
        attempt = 0
        while True:
            try:
                outcome = await self.db.call(store_isolating, batch)
                break
            except TRANSIENT_ERRORS as exc:
                attempt += 1
                if retries is not None and attempt > retries:
                    logger.error(
                        "Gave up storing %d %s events: %s", len(batch), self.status.venue, exc
                    )
                    return None
                # Database away or locked: keep the batch, try again. Events arriving
                # meanwhile wait in the backlog.
                self.log.log(
                    logging.WARNING,
                    "database",
                    "Storing %d %s events failed (%s); retry %d in %.1f s",
                    len(batch),
                    self.status.venue,
                    str(exc).strip()[:200],
                    attempt,
                    delay,
                    reason=type(exc).__name__,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            except Exception:
                # A bug outside the database's answers: logged, and the stream goes on.
                logger.exception("Storing a batch of %d events failed; batch dropped", len(batch))
                return None
        if attempt:
            self.log.recovered("database", f"Storing works again after {attempt} retries")
        return outcome

    async def _broadcast(self, messages: Messages, *, rows: int) -> None:
        try:
            await broadcast(channel_layer=self.channel_layer, messages=messages)
        except Exception as exc:
            # Stored all the same: web processes catch up from the database when their
            # channel layer is back (live/fanout.py).
            self.log.log(
                logging.WARNING,
                "channel layer",
                "Broadcasting %d stored rows failed: %r",
                rows,
                exc,
                reason=type(exc).__name__,
            )
        else:
            self.log.recovered("channel layer", "Broadcasting works again")

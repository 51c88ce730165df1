"""Store parsed batches and broadcast their rows, whatever the database or Redis do.

The database away: the batch is kept and retried (the backlog holds what arrives
meanwhile). A row the database refuses: kept as a dead letter, the rest stored
(store.store_isolating). Redis away: the rows are stored all the same; web processes
catch up from the database once their channel layer is back (live/fanout.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.utils import timezone

from ..live.broadcast import Messages, broadcast
from ..logs import LIMITED, RateLimitedLog
from .dbthread import DbThread
from .status import IngestStatus
from .store import TRANSIENT_ERRORS, Batch, StoreOutcome, store_isolating

logger = logging.getLogger(__name__)

# While the database is away, the batch is tried again this often at most (the first
# retry sooner): it resumes within ~2 s of the database's return, not up to 30 s later.
RETRY_INITIAL_SECONDS = 0.5
RETRY_MAX_SECONDS = 2.0


class BatchWriter:
    """Store a batch (retrying, isolating refused rows), count it, broadcast its rows."""

    def __init__(
        self, *, db: DbThread, channel_layer: Any, status: IngestStatus, log: RateLimitedLog
    ) -> None:
        self.db = db
        self.channel_layer = channel_layer
        self.status = status
        self.log = log

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
                "The database refused %d of %d events, kept as dead letters: %s",
                outcome.dead_letters,
                len(batch),
                outcome.error[:300],
                reason=outcome.error.split(":", 1)[0],
            )
        for frame in outcome.unkept:
            # Refused, and its dead letter too: the log is the last place it is kept.
            logger.error(
                "Refused event not kept as a dead letter: %s", frame, extra={LIMITED: True}
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
                    logger.error("Gave up storing %d events: %s", len(batch), exc)
                    return None
                # Database away or locked: keep the batch, try again. Events arriving
                # meanwhile wait in the queue.
                self.log.log(
                    logging.WARNING,
                    "database",
                    "Storing %d events failed (%s); retry %d in %.1f s",
                    len(batch),
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

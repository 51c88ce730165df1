"""The open hole in one venue's record: from a disconnect (or a dead worker's last
heartbeat) until the next connection, written as it grows so a crash still leaves it
recorded."""

from __future__ import annotations

import logging
from datetime import datetime

from django.utils import timezone

from ..services.gaps import connection_gap_extend, connection_gap_open, connection_gap_record
from .dbthread import DbThread

logger = logging.getLogger(__name__)


class GapRecorder:
    """Open, grow and close one venue's current ConnectionGap (at most one at a time)."""

    def __init__(self, *, db: DbThread, venue: str) -> None:
        self._db = db
        self.venue = venue
        self._gap: tuple[datetime, str] | None = None  # (started_at, reason)
        self._gap_id: int | None = None

    @property
    def is_open(self) -> bool:
        return self._gap is not None

    async def open(self, started_at: datetime, reason: str) -> None:
        if self._gap is not None:
            return
        self._gap = (started_at, reason)
        try:
            self._gap_id = await self._db.call(
                connection_gap_open, venue=self.venue, started_at=started_at, reason=reason
            )
        except Exception:
            # Kept in memory; recorded in full when it closes.
            logger.exception("Recording the start of a connection gap failed")
            self._gap_id = None

    async def extend(self) -> None:
        """Move an open hole's recorded end to now (called every heartbeat)."""
        if self._gap_id is None:
            return
        try:
            await self._db.call(connection_gap_extend, gap_id=self._gap_id, ended_at=timezone.now())
        except Exception as exc:
            # The next heartbeat tries again; the close records the end in any case.
            logger.debug("Extending the open connection gap failed: %s", exc)

    async def close(self, ended_at: datetime) -> None:
        if self._gap is None:
            return
        started_at, reason = self._gap
        try:
            if self._gap_id is not None:
                await self._db.call(connection_gap_extend, gap_id=self._gap_id, ended_at=ended_at)
            else:
                await self._db.call(
                    connection_gap_record,
                    venue=self.venue,
                    started_at=started_at,
                    ended_at=ended_at,
                    reason=reason,
                )
        except Exception:
            logger.exception("Recording the end of a connection gap failed")
            return
        logger.info(
            "Connection gap of %s recorded: %s → %s (%s)",
            self.venue,
            started_at.isoformat(),
            ended_at.isoformat(),
            reason,
        )
        self._gap = None
        self._gap_id = None

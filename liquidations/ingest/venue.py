"""One venue's ingest: its connection, backlog, writer, listing and gaps, on its own.

Nothing is shared between venues but the event loop and the database: each has its own
backlog (a venue held back by its writer holds only its own socket), its own database
thread and connection (a venue retrying a write never delays another's), its own
listing sync and its own gap record, so one venue down, slow or sending garbage never
stops or slows the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from ..logs import RateLimitedLog
from ..upstream.client import Backoff, UpstreamClient
from ..upstream.events import LiquidationEvent, MalformedFrame, PartlyMalformed, UnknownInstrument
from .backlog import Backlog
from .dbthread import DbThread
from .gaps import GapRecorder
from .instruments import InstrumentsLoop
from .status import VenueStatus
from .store import Batch
from .tasks import finish_or_cancel, log_task_end, wait_ended
from .writer import BatchWriter

logger = logging.getLogger(__name__)

# Frames parsed between two yields to the event loop (a batch is up to MAX_BATCH).
PARSE_SLICE = 500
HEARTBEAT_SECONDS = 1.0
STOP_TASKS_SECONDS = 10.0
# Frames of instruments the listing lacks, kept for the next listing (then parsed again).
MAX_HELD_FRAMES = 10_000
# A subscription not acknowledged within this long is reported in the log.
ACK_TIMEOUT_SECONDS = 10.0


class VenueIngest:
    """One venue: upstream frames → raw backlog → parsed batches → store → broadcast."""

    def __init__(self, *, adapter: Any, channel_layer: Any, max_backlog_bytes: int) -> None:
        self.adapter = adapter
        self.name: str = adapter.name
        self.channel_layer = channel_layer
        self.status = VenueStatus(venue=self.name)
        # Frames stay raw bytes until the writer takes them: a quarter of a parsed
        # LiquidationEvent (Decimals, strings: ~1 kB), and parsed once, in batches.
        self.queue = Backlog(max_bytes=max_backlog_bytes)
        self.db = DbThread(name=f"ingest-{self.name}")
        self.gaps = GapRecorder(db=self.db, venue=self.name)
        # Faults that repeat (bad frames, the database or Redis away) are logged a few
        # times a minute, then summarised; status keeps the exact counts and last errors.
        self.log = RateLimitedLog(logger)
        self.status.last_errors = self.log.last
        self.writer = BatchWriter(
            queue=self.queue,
            parse=self.parse,
            db=self.db,
            status=self.status,
            channel_layer=channel_layer,
            log=self.log,
        )
        self.instruments: InstrumentsLoop | None = None
        self._client: UpstreamClient | None = None
        self._tasks: dict[str, asyncio.Task] = {}
        self._held: list[bytes] = []

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    @property
    def client(self) -> UpstreamClient | None:
        return self._client

    async def start(self, *, adapter: Any, last_seen: datetime | None, idle_reason: str) -> None:
        """Connect (after the first listing, where the venue needs it) and stream."""
        if self.running:
            return
        self.adapter = adapter
        self.status.url = adapter.url
        self.status.state = "connecting"
        self.queue.reopen()
        if last_seen is not None:
            await self.gaps.open(last_seen, idle_reason)
        self._client = self._new_client(adapter)
        self.instruments = InstrumentsLoop(
            adapter=adapter, db=self.db, status=self.status, on_synced=self._listing_synced
        )
        self._tasks = {
            "upstream": asyncio.create_task(self._upstream(), name=f"ingest-{self.name}-upstream"),
            "writer": asyncio.create_task(self.writer.run(), name=f"ingest-{self.name}-writer"),
            "heartbeat": asyncio.create_task(
                self._heartbeat(), name=f"ingest-{self.name}-heartbeat"
            ),
            "instruments": asyncio.create_task(
                self.instruments.run(), name=f"ingest-{self.name}-instruments"
            ),
        }
        for task in self._tasks.values():
            task.add_done_callback(log_task_end)
        logger.info("Ingest of %s started: %s", self.name, adapter.url)

    def _new_client(self, adapter: Any) -> UpstreamClient:
        ping_interval = {
            "bybit": settings.BYBIT_PING_INTERVAL_SECONDS,
            "okx": settings.OKX_PING_INTERVAL_SECONDS,
        }.get(self.name, settings.BINANCE_PING_INTERVAL_SECONDS)
        return UpstreamClient(
            url=adapter.url,
            on_message=self._on_message,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            backoff=Backoff(
                initial=settings.BINANCE_RECONNECT_INITIAL_SECONDS,
                cap=settings.BINANCE_RECONNECT_MAX_SECONDS,
            ),
            max_connection_age=settings.BINANCE_MAX_CONNECTION_SECONDS,
            stable_after=settings.BINANCE_STABLE_CONNECTION_SECONDS,
            ping_interval=ping_interval,
            ping_timeout=settings.BINANCE_PING_TIMEOUT_SECONDS,
            subscribe=adapter.connect_messages,
            keepalive_message=adapter.keepalive_message,
            ping_always=adapter.ping_always,
        )

    async def _upstream(self) -> None:
        # Bybit's topics and OKX's contract sizes come from the listing: connect after it.
        assert self._client is not None and self.instruments is not None
        if getattr(self.adapter, "needs_listing", False):
            await self.instruments.listed.wait()
        await self._client.run()

    async def stop(self) -> None:
        """Stop streaming, then store and broadcast everything already received."""
        if not self.running:
            return
        tasks = self._tasks
        assert self._client is not None
        await self._client.stop()
        await finish_or_cancel(tasks["upstream"], timeout=10)
        if not tasks["upstream"].done():
            tasks["upstream"].cancel()
        for name in ("heartbeat", "instruments"):
            tasks[name].cancel()
        # The writer stores what is left in the backlog, then ends; a writer stuck
        # retrying an unavailable database is given up on after a while.
        self.queue.close()
        await finish_or_cancel(tasks["writer"], timeout=30)
        await wait_ended(tasks.values(), timeout=STOP_TASKS_SECONDS)
        await self.writer.flush()
        self._tasks = {}
        await self.gaps.close(timezone.now())
        self.status.state = "stopped"
        self.status.connected_since = None
        logger.info(
            "Ingest of %s stopped: %d received, %d stored, %d duplicates, %d malformed",
            self.name,
            self.status.events_received,
            self.status.events_stored,
            self.status.duplicates_skipped,
            self.status.malformed_dropped,
        )

    async def aclose(self) -> None:
        await self.db.aclose()

    # -- reading -----------------------------------------------------------------------

    def _on_message(self, raw: bytes) -> Awaitable[None] | None:
        """Keep the frame for the writer; past the backlog bound, make the reader wait."""
        full = self.queue.put(raw)
        if not full or (self._client is not None and self._client.stopping):
            return None  # when stopping, the last frames are kept and nothing waits
        return self._hold()

    async def _hold(self) -> None:
        started = time.monotonic()
        logger.warning(
            "Backlog of %d unstored %s frames (%.1f MiB): its reads wait for the writer",
            len(self.queue),
            self.name,
            self.queue.size / 2**20,
        )
        await self.queue.drained()
        logger.info("%s reads resume after %.2f s", self.name, time.monotonic() - started)

    async def parse(self, frames: list[bytes]) -> Batch:
        """Parse a batch of raw frames; count, log and skip the malformed ones.

        Each event is kept with the frame it came from (a dead letter keeps that frame).
        """
        batch = Batch()
        parse = self.adapter.parse
        for start in range(0, len(frames), PARSE_SLICE):
            if start:
                await asyncio.sleep(0)  # a 5,000-frame batch is ~50 ms of CPU
            for raw in frames[start : start + PARSE_SLICE]:
                try:
                    self._add(batch, parse(raw), raw)
                except UnknownInstrument as exc:
                    self._keep_for_listing(raw, exc)
                except PartlyMalformed as exc:
                    self._add(batch, exc.events, raw)
                    self._malformed(raw, exc, count=exc.count)
                except MalformedFrame as exc:
                    self._malformed(raw, exc)
        self.status.events_received += len(batch)
        return batch

    @staticmethod
    def _add(batch: Batch, events: list[LiquidationEvent], raw: bytes) -> None:
        for event in events:
            batch.add(event, raw)

    def _malformed(self, raw: bytes, exc: Exception, *, count: int = 1) -> None:
        self.status.malformed_dropped += count
        self.log.log(
            logging.WARNING,
            "malformed frames",
            "Dropped malformed %s frame (%s): %.200r",
            self.name,
            exc,
            _text(raw),
            reason=str(exc).split(":", 1)[0][:60],
        )

    def _keep_for_listing(self, raw: bytes, exc: Exception) -> None:
        if len(self._held) >= MAX_HELD_FRAMES:
            self._malformed(raw, exc)
            return
        self._held.append(raw)
        if self.instruments is not None:
            self.instruments.request()

    async def _listing_synced(self) -> None:
        """Subscribe new listings; parse again the frames that waited for the listing."""
        if self._client is not None:
            await self._client.send(self.adapter.new_messages())
        self.status.subscriptions = self.adapter.describe()
        held, self._held = self._held, []
        batch = Batch()
        for raw in held:
            try:
                self._add(batch, self.adapter.parse(raw), raw)
            except PartlyMalformed as exc:
                self._add(batch, exc.events, raw)
                self._malformed(raw, exc, count=exc.count)
            except MalformedFrame as exc:  # still unknown: not a listed instrument
                self._malformed(raw, exc)
        if batch:
            self.status.events_received += len(batch)
            await self.writer.store(batch)

    async def _on_connected(self) -> None:
        now = timezone.now()
        self.status.state = "streaming"
        self.status.connected_since = now
        self.status.disconnected_since = None
        await self.gaps.close(now)

    async def _on_disconnected(self, reason: str) -> None:
        now = timezone.now()
        self.status.state = "reconnecting"
        self.status.connected_since = None
        self.status.disconnected_since = now
        if self._client is not None and self._client.stopping:
            # A requested stop: the hole starts at the stop (the next start records it).
            return
        self.status.reconnects += 1
        self.log.note("upstream", reason)
        await self.gaps.open(now, reason)

    async def _heartbeat(self) -> None:
        reported: set[str] = set()
        while True:
            # An open hole grows with every heartbeat, so a crash still leaves it
            # recorded up to the last moment this worker was alive.
            await self.gaps.extend()
            self.status.subscriptions = self.adapter.describe()
            unacked = getattr(self.adapter, "unacked", None)
            late = set(unacked(older_than=ACK_TIMEOUT_SECONDS)) if unacked else set()
            if late - reported:
                logger.warning("%s: %d subscriptions not acknowledged", self.name, len(late))
            reported = late
            self.log.flush()
            await asyncio.sleep(HEARTBEAT_SECONDS)


def _text(raw: str | bytes) -> str:
    """Return a frame as text for a log line (invalid UTF-8 shown as U+FFFD)."""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw

"""The ingest pipeline: upstream frames → backlog → parsed batches → store → broadcast.

Four tasks run side by side, never inside a message handler: the upstream client, the
batch writer, the heartbeat (worker state, the open connection gap) and the symbol sync,
plus the stats publisher and an optional backfill (tasks.py). Every database call runs on
one dedicated thread with its own connection (dbthread.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from django.conf import settings
from django.utils import timezone

from ..live.broadcast import worker_status_broadcast
from ..logs import RateLimitedLog
from ..selectors.status import worker_state_last_seen
from ..services.worker_state import worker_state_save
from ..upstream.binance import parse_frame, stream_url
from ..upstream.client import Backoff, UpstreamClient
from ..upstream.events import MalformedFrame
from .backlog import MAX_BACKLOG_BYTES, Backlog
from .dbthread import DbThread
from .gaps import GapRecorder
from .status import IngestStatus
from .store import Batch
from .symbols import symbols_sync, symbols_sync_loop
from .tasks import finish_or_cancel, log_task_end, side_tasks_start, side_tasks_stop, wait_ended
from .writer import BatchWriter

logger = logging.getLogger(__name__)

MAX_BATCH = 5000
# Frames parsed between two yields to the event loop (a batch is up to MAX_BATCH).
PARSE_SLICE = 500
HEARTBEAT_SECONDS = 1.0
# How long stop() waits for the ingest's ended or cancelled tasks to finish.
STOP_TASKS_SECONDS = 10.0


class Ingest:
    """Upstream frames → raw backlog → parsed batches → store → one broadcast per group.

    Four tasks: the upstream client, the batch writer, the heartbeat (worker state and
    the end of an open connection gap) and the exchangeInfo sync. Every database call
    runs on one dedicated thread with its own connection.
    """

    def __init__(self, *, channel_layer: Any, max_backlog_bytes: int = MAX_BACKLOG_BYTES) -> None:
        self.channel_layer = channel_layer
        self.status = IngestStatus()
        # Frames stay raw bytes until the writer takes them: a quarter of a parsed
        # LiquidationEvent (Decimals, strings: ~1 kB), and parsed once, in batches.
        self.queue = Backlog(max_bytes=max_backlog_bytes)
        self.db = DbThread(name="ingest-db")
        self.gaps = GapRecorder(db=self.db)
        self._client: UpstreamClient | None = None
        self._tasks: dict[str, asyncio.Task] = {}
        self._idle_reason = "worker not running"
        self._state_failing_since: float | None = None
        self._state_failure_logged = 0.0
        self._side_tasks: list[asyncio.Task] = []
        # Faults that repeat (bad frames, the database or Redis away) are logged a few
        # times a minute, then summarised; status keeps the exact counts and last errors.
        self.log = RateLimitedLog(logger)
        self.status.last_errors = self.log.last
        self.writer = BatchWriter(
            db=self.db, channel_layer=channel_layer, status=self.status, log=self.log
        )

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def start(self) -> None:
        if self.running:
            return
        url = stream_url(
            base_url=settings.BINANCE_WS_BASE_URL, symbols=settings.LIQUIDATION_SYMBOLS
        )
        self.status.url = url
        self.status.state = "connecting"
        self.queue.reopen()
        # The record has a hole from the last sign of life of a worker until we connect.
        try:
            last_seen = await self.db.call(worker_state_last_seen)
        except Exception:
            logger.exception("Reading the last worker heartbeat failed")
            last_seen = None
        if last_seen is not None:
            await self.gaps.open(last_seen, self._idle_reason)
        self._client = UpstreamClient(
            url=url,
            on_message=self._on_message,
            on_connected=self._on_connected,
            on_disconnected=self._on_disconnected,
            backoff=Backoff(
                initial=settings.BINANCE_RECONNECT_INITIAL_SECONDS,
                cap=settings.BINANCE_RECONNECT_MAX_SECONDS,
            ),
            max_connection_age=settings.BINANCE_MAX_CONNECTION_SECONDS,
            stable_after=settings.BINANCE_STABLE_CONNECTION_SECONDS,
            ping_interval=settings.BINANCE_PING_INTERVAL_SECONDS,
            ping_timeout=settings.BINANCE_PING_TIMEOUT_SECONDS,
        )
        self._tasks = {
            "upstream": asyncio.create_task(self._client.run(), name="ingest-upstream"),
            "writer": asyncio.create_task(self._write_loop(), name="ingest-writer"),
            "heartbeat": asyncio.create_task(self._heartbeat_loop(), name="ingest-heartbeat"),
            "symbols": asyncio.create_task(
                symbols_sync_loop(db=self.db, status=self.status), name="ingest-symbols"
            ),
        }
        for task in self._tasks.values():
            task.add_done_callback(log_task_end)
        self._side_tasks = side_tasks_start(channel_layer=self.channel_layer, since=last_seen)
        logger.info("Ingest started: %s", url)

    async def stop(self) -> None:
        """Stop streaming, then store and broadcast everything already received."""
        if not self.running:
            return
        tasks = self._tasks
        assert self._client is not None
        await self._client.stop()
        await finish_or_cancel(tasks["upstream"], timeout=10)
        for name in ("heartbeat", "symbols"):
            tasks[name].cancel()
        # The writer stores what is left in the backlog, then ends; a writer stuck
        # retrying an unavailable database is given up on after a while.
        self.queue.close()
        await finish_or_cancel(tasks["writer"], timeout=30)
        await wait_ended(tasks.values(), timeout=STOP_TASKS_SECONDS)
        await side_tasks_stop(self._side_tasks)
        await self._flush_queue()
        self._tasks = {}
        now = timezone.now()
        await self.gaps.close(now)
        self._idle_reason = "stream stopped"
        self.status.state = "stopped"
        self.status.connected_since = None
        await self.save_state()
        await worker_status_broadcast(channel_layer=self.channel_layer, status=self.status)
        logger.info(
            "Ingest stopped: %d received, %d stored, %d duplicates skipped, %d malformed dropped",
            self.status.events_received,
            self.status.events_stored,
            self.status.duplicates_skipped,
            self.status.malformed_dropped,
        )

    def _on_message(self, raw: bytes) -> Awaitable[None] | None:
        """Keep the frame for the writer; past the backlog bound, make the reader wait."""
        full = self.queue.put(raw)
        if not full or (self._client is not None and self._client.stopping):
            return None  # when stopping, the last frames are kept and nothing waits
        return self._hold()

    async def _hold(self) -> None:
        started = time.monotonic()
        logger.warning(
            "Backlog of %d unstored frames (%.1f MiB): upstream reads wait for the writer",
            len(self.queue),
            self.queue.size / 2**20,
        )
        await self.queue.drained()
        logger.info("Upstream reads resume after %.2f s", time.monotonic() - started)

    async def _parse(self, frames: list[bytes]) -> Batch:
        """Parse a batch of raw frames; count, log and skip the malformed ones."""
        batch = Batch()
        for start in range(0, len(frames), PARSE_SLICE):
            if start:
                await asyncio.sleep(0)  # a 5,000-frame batch is ~50 ms of CPU
            for raw in frames[start : start + PARSE_SLICE]:
                try:
                    batch.add(parse_frame(raw), raw)
                except MalformedFrame as exc:
                    self.status.malformed_dropped += 1
                    self.log.log(
                        logging.WARNING,
                        "malformed frames",
                        "Dropped malformed frame (%s): %.200r",
                        exc,
                        _text(raw),
                        reason=str(exc).split(":", 1)[0][:60],
                    )
        self.status.events_received += len(batch)
        return batch

    async def _on_connected(self) -> None:
        now = timezone.now()
        self.status.state = "streaming"
        self.status.connected_since = now
        await self.gaps.close(now)

    async def _on_disconnected(self, reason: str) -> None:
        now = timezone.now()
        self.status.state = "reconnecting"
        self.status.connected_since = None
        if self._client is not None and self._client.stopping:
            # A requested stop: the hole starts at the stop (the next start records it).
            return
        self.status.reconnects += 1
        self.log.note("upstream", reason)
        await self.gaps.open(now, reason)

    # -- writing -----------------------------------------------------------------------

    async def _write_loop(self) -> None:
        # Adaptive batching: an idle writer stores the first event at once; while a
        # write is in flight, newer frames pile up in the backlog and go in the next batch.
        # Under load batches are also held LIQUIDATION_BATCH_INTERVAL apart (the first
        # event after a quiet spell still goes at once): each batch costs a transaction,
        # a publish and a fan-out round in every web process, whatever its size.
        interval = settings.LIQUIDATION_BATCH_INTERVAL
        loop = asyncio.get_running_loop()
        last_batch_at = -interval
        storing: asyncio.Task | None = None
        try:
            while frames := await self.queue.take(MAX_BATCH):
                # Parsed while the previous batch is being stored: its database round
                # trips release the GIL, so parsing costs the writer no extra time.
                batch = await self._parse(frames)
                if storing is not None:
                    await storing
                wait = last_batch_at + interval - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                last_batch_at = loop.time()
                if len(frames) < MAX_BATCH:
                    batch.extend(await self._parse(self.queue.take_nowait(MAX_BATCH - len(frames))))
                del frames
                storing = (
                    asyncio.create_task(self.writer.store(batch), name="ingest-store")
                    if batch
                    else None
                )
                del batch
            if storing is not None:
                await storing
        except asyncio.CancelledError:
            if storing is not None:
                storing.cancel()
            raise

    async def _flush_queue(self) -> None:
        """Store what a cancelled writer left in the backlog (a few tries, then give up)."""
        while frames := self.queue.take_nowait(MAX_BATCH):
            batch = await self._parse(frames)
            if batch:
                await self.writer.store(batch, retries=2)

    # -- background loops ----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await self.save_state()
            await worker_status_broadcast(channel_layer=self.channel_layer, status=self.status)
            # An open hole grows with every heartbeat, so a crash still leaves it
            # recorded up to the last moment this worker was alive.
            await self.gaps.extend()
            self.log.flush()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def sync_symbols(self) -> int:
        """Fetch exchangeInfo and upsert the Symbol table now; return the symbols synced."""
        return await symbols_sync(db=self.db, status=self.status)

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
        """Close the writer thread's database connection and the thread itself."""
        await self.db.aclose()


def _text(raw: str | bytes) -> str:
    """Return a frame as text for a log line (invalid UTF-8 shown as U+FFFD)."""
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw
